"""Speed layer: Spark Structured Streaming from Kafka to the Delta master dataset, quarantine and speed views."""
