"""The shared core of the broker: what the operator and the enrichment core both need.

The BrokerPipeline model and the CRD generated from it, connection resolution,
the Kafka and HBase admin adapters, the science catalogue and planner, and the
error classes. It imports neither `fink_operator` nor `fink_pipeline`, and
nothing of the development stack: both sides build on it, never on each other.
"""
