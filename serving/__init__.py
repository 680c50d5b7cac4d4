"""Serving layer: Cassandra store and the merge of batch and speed views behind one query API."""
