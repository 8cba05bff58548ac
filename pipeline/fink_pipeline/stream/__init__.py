"""The streaming side of the enrichment core: Kafka in, science, Kafka/HBase/Parquet out."""
