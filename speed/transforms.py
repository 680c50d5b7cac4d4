"""Pure DataFrame transforms of the speed layer: Kafka records -> classified -> quarantine rows / master rows / unique
events for the views. No reads, writes or settings here; values come in as arguments.

Input records have Kafka's columns (value, topic, partition, offset, timestamp) and `batch_ts`, the micro-batch's
timestamp (Spark's `current_timestamp()` in a streaming plan is fixed per micro-batch and kept in the offset log, so a
replayed batch sees the same value). Every time the speed layer stamps comes from it; nothing depends on the clock of
the replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from functools import partial
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from schemas.contracts import Contract
from schemas.spark_types import parsing_schema

CLASSIFICATION_FIELDS = [
    StructField("reason", StringType()),
    StructField("detail", StringType()),
    StructField("event_type", StringType()),
]


def with_ingestion(records: DataFrame, bucket_seconds: int) -> DataFrame:
    """Stamp ingestion time and the handoff bucket (DESIGN.md, merge contract rule 1) from the batch timestamp."""
    return records.withColumn("ingested_at", F.col("batch_ts")).withColumn(
        "handoff_bucket", F.floor(F.unix_millis(F.col("batch_ts")) / (bucket_seconds * 1000)).cast("bigint")
    )


def _classify(rules_file: Path | None, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    # Runs in the Python workers: the same compiled validator as the producers and the ingest endpoint, so a record
    # gets the same reason wherever it is checked. Spark's JSON reader cannot tell a JSON string from a number in a
    # string column, or reject NaN, so the check itself is this one vectorised function over Arrow batches.
    from schemas.contracts import default_contracts, rules
    from schemas.validation import Rejection, Validator

    validator = Validator(default_contracts(), rules(rules_file))
    for batch in batches:
        values = batch.column("value").to_pylist()
        times = batch.column("ingested_at").to_pylist()
        reasons, details, types = [], [], []
        for raw, now in zip(values, times):
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
            if raw is None:
                event, rejection = None, Rejection("unparseable", "empty record (no value)")
            else:
                event, rejection = validator.check_bytes(raw, now)
            reasons.append(rejection.reason if rejection else None)
            details.append(rejection.detail[:500] if rejection else None)
            types.append(event["event_type"] if event else None)
        yield (
            batch.append_column("reason", pa.array(reasons, pa.string()))
            .append_column("detail", pa.array(details, pa.string()))
            .append_column("event_type", pa.array(types, pa.string()))
        )


def classify(records: DataFrame, rules_file: Path | None = None) -> DataFrame:
    """Add `reason` and `detail` (null for a valid event) and `event_type` (null for an invalid one), under the
    rules of `rules_file` (settings.rules_file; None = the packaged ones)."""
    schema = StructType(records.schema.fields + CLASSIFICATION_FIELDS)
    return records.mapInArrow(partial(_classify, rules_file), schema)


def quarantine_rows(classified: DataFrame, batch_id: int) -> DataFrame:
    """Invalid records as they came, with their Kafka coordinates and the reason."""
    return classified.where(F.col("reason").isNotNull()).select(
        F.col("value").alias("raw"),
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        "reason",
        "detail",
        "handoff_bucket",
        "ingested_at",
        F.lit(batch_id).cast("bigint").alias("speed_batch"),
        F.to_date("ingested_at").alias("ingest_date"),
    )


def master_rows(classified: DataFrame, event_type: str, versions: dict[int, Contract], batch_id: int) -> DataFrame:
    """The valid events of one type, typed by the contract-derived schema, with their ingestion columns."""
    parsed = classified.where(F.col("reason").isNull() & (F.col("event_type") == event_type)).select(
        F.from_json(F.col("value").cast("string"), parsing_schema(versions)).alias("event"),
        "handoff_bucket",
        "ingested_at",
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    )
    return parsed.select(
        F.col("event.event_id").alias("event_id"),
        F.col("event.event_type").alias("event_type"),
        F.col("event.schema_version").cast("int").alias("schema_version"),
        F.to_timestamp(F.col("event.event_time")).alias("event_time"),
        F.col("event.source").alias("source"),
        F.col("event.payload").alias("payload"),
        "handoff_bucket",
        "ingested_at",
        "kafka_partition",
        "kafka_offset",
        F.lit(batch_id).cast("bigint").alias("speed_batch"),
        F.to_date("ingested_at").alias("ingest_date"),
    )


def unique_events(batch_events: DataFrame, earlier_event_ids: DataFrame | None) -> DataFrame:
    """Count each event_id once: the first copy within the batch (by Kafka position), and none already seen earlier."""
    first = Window.partitionBy("event_id").orderBy("kafka_partition", "kafka_offset")
    deduplicated = batch_events.withColumn("_copy", F.row_number().over(first)).where(F.col("_copy") == 1).drop("_copy")
    if earlier_event_ids is None:
        return deduplicated
    return deduplicated.join(F.broadcast(earlier_event_ids), on="event_id", how="left_anti")


def id_hashes(events: DataFrame) -> DataFrame:
    """(handoff_bucket, hash): the de-duplication index's entry for each copy (`speed/seen.py`)."""
    return events.select("handoff_bucket", F.xxhash64("event_id").alias("hash"))


def horizon_hashes(master: DataFrame, batch_id: int, handoff_bucket: int, horizon_buckets: int) -> DataFrame:
    """The index entries of the copies earlier micro-batches committed within the de-duplication horizon."""
    earlier = (F.col("speed_batch") < batch_id) & (F.col("handoff_bucket") >= handoff_bucket - horizon_buckets)
    return id_hashes(master.where(earlier))


def earlier_copies(master: DataFrame, batch_id: int, buckets: list[int], hashes: DataFrame) -> DataFrame:
    """The event ids, among those whose hash is in `hashes` (column `hash`), that earlier micro-batches committed to
    the given handoff buckets: the exact check behind an index hit (a hash collision matches no id here)."""
    earlier = master.where((F.col("speed_batch") < batch_id) & F.col("handoff_bucket").isin(buckets)).select("event_id")
    return earlier.join(F.broadcast(hashes), F.xxhash64("event_id") == hashes["hash"], "left_semi").distinct()
