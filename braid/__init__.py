"""Braid: a Lambda-architecture data platform (Kafka -> Spark/Delta -> Cassandra), shared core."""

__version__ = "0.1.0"
