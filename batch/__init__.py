"""Batch layer: exact views recomputed from a Delta snapshot, gated by Great Expectations, published atomically."""
