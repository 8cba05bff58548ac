"""The fink operator: reconciles BrokerPipeline resources into Kafka topics and HBase tables."""
