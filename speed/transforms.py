"""Pure DataFrame transforms of the speed layer: Kafka records -> classified -> quarantine rows / master rows / unique
events for the views. No reads, writes or settings here; values come in as arguments.

Input records have Kafka's columns (value, topic, partition, offset, timestamp). Every time the speed layer stamps
comes from the micro-batch's timestamp, which Spark fixes in its offset log before the batch runs (a replayed batch sees
the same value); nothing depends on the clock of the replay.

The view path's plan holds no value of its micro-batch (neither its id nor its timestamp): Spark inlines such literals
in the Java code it generates, so every micro-batch compiled its projections anew, a quarter of its tasks' time. The
timestamp reaches the validator as the Python function's argument, and the ingestion columns are added by the archive
(`with_ingestion`) and, for the view path's own collect, in the driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial, reduce
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from schemas.contracts import Contract
from schemas.spark_types import parsing_schema

CLASSIFICATION_FIELDS = [
    StructField("reason", StringType()),
    StructField("detail", StringType()),
    StructField("event_type", StringType()),
    StructField("event_id", StringType()),
]


def handoff_bucket(batch_ms: int, bucket_seconds: int) -> int:
    """The handoff bucket of a micro-batch's events (docs/design.md, merge contract rule 1)."""
    return batch_ms // (bucket_seconds * 1000)


def with_ingestion(records: DataFrame, bucket_seconds: int, batch_id: int, batch_ms: int) -> DataFrame:
    """Stamp ingestion time and the handoff bucket from the micro-batch's timestamp, and the micro-batch id."""
    return records.select(
        "*", F.timestamp_millis(F.lit(batch_ms)).alias("ingested_at"),
        F.lit(handoff_bucket(batch_ms, bucket_seconds)).cast("bigint").alias("handoff_bucket"),
        F.lit(batch_id).cast("bigint").alias("speed_batch"),
    )  # fmt: skip


def _classify(rules_file: Path | None, batch_ms: int, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    # Runs in the Python workers: the same compiled validator as the producers and the ingest endpoint, so a record
    # gets the same reason wherever it is checked. Spark's JSON reader cannot tell a JSON string from a number in a
    # string column, or reject NaN, so the check itself is this one vectorised function over Arrow batches.
    from schemas.contracts import default_contracts, rules
    from schemas.validation import Rejection, Validator

    validator = Validator(default_contracts(), rules(rules_file))
    now = datetime.fromtimestamp(batch_ms / 1000, UTC)  # the ingestion time: event times are checked against it
    for batch in batches:
        values = batch.column("value").to_pylist()
        reasons, details, types, ids = [], [], [], []
        for raw in values:
            if raw is None:
                event, rejection = None, Rejection("unparseable", "empty record (no value)")
            else:
                event, rejection = validator.check_bytes(raw, now)
            reasons.append(rejection.reason if rejection else None)
            details.append(rejection.detail[:500] if rejection else None)
            types.append(event["event_type"] if event else None)
            ids.append(event["event_id"] if event else None)
        yield (
            batch.append_column("reason", pa.array(reasons, pa.string()))
            .append_column("detail", pa.array(details, pa.string()))
            .append_column("event_type", pa.array(types, pa.string()))
            .append_column("event_id", pa.array(ids, pa.string()))
        )


def classify(records: DataFrame, batch_ms: int, rules_file: Path | None = None) -> DataFrame:
    """Add `reason` and `detail` (null for a valid event) and `event_type` and `event_id` (null for an invalid one), under the
    rules of `rules_file` (settings.rules_file; None = the packaged ones), as of the micro-batch's timestamp."""
    schema = StructType(records.schema.fields + CLASSIFICATION_FIELDS)
    return records.mapInArrow(partial(_classify, rules_file, batch_ms), schema)


def quarantine_rows(classified: DataFrame) -> DataFrame:
    """Invalid records as they came, with their Kafka coordinates, the reason and their micro-batch (`speed_batch`)."""
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
        F.col("speed_batch").cast("bigint"),
        F.to_date("ingested_at").alias("ingest_date"),
    )


def _valid_of(event_type: str) -> Column:
    return F.col("reason").isNull() & (F.col("event_type") == event_type)


def _parsed(versions: dict[int, Contract]) -> Column:
    return F.from_json(F.col("value").cast("string"), parsing_schema(versions))


def _event_time() -> Column:
    return F.to_timestamp(F.col("event.event_time")).alias("event_time")


class BatchRecords:
    """What the view path collects from a classified micro-batch, in one projection: every record's small columns
    (reason, type, Kafka position, times, event id and its `xxhash64`: `speed/facts.py` reads them) and, for a valid
    event, its view cells (`braid.view_compiler.ViewCells`) from the parse of `master_rows`. Each type's parse is
    evaluated only for that type's records. The expressions are built once, not per micro-batch."""

    FACTS = ("reason", "event_type", "partition", "offset", "event_id", "produced_ms", "hash")  # + handoff_bucket, batch_ms (`stamped`)

    def __init__(self, registry: dict[str, dict[int, Contract]], views, kinds) -> None:
        from braid.view_compiler import CELL_FIELDS, ViewCells

        facts = [
            *[F.col(name) for name in self.FACTS[:5]],
            F.unix_millis("timestamp").alias("produced_ms"),
            F.when(F.col("event_id").isNotNull(), F.xxhash64("event_id")).alias("hash"),
        ]  # fmt: skip
        parsed = [F.when(_valid_of(t), _parsed(versions)).alias(f"event_{t}") for t, versions in registry.items()]
        cells = ViewCells(views, kinds, {t: (f"event_{t}.payload", F.to_timestamp(F.col(f"event_{t}.event_time"))) for t in registry})
        chosen = reduce(lambda column, t: column.when(_valid_of(t), cells.column(t)), list(registry)[1:],
                        F.when(_valid_of(next(iter(registry))), cells.column(next(iter(registry)))))  # fmt: skip
        self._parse = [*facts, *parsed]
        # One declared type: the branches' structs differ in which fields may be null, and Arrow wants one.
        self._collect = [*self.FACTS, chosen.cast(f"array<struct<{CELL_FIELDS}>>").alias("cells")]

    def __call__(self, classified: DataFrame) -> DataFrame:
        return classified.select(*self._parse).select(*self._collect)


def stamped(records: pa.Table, batch_ms: int, bucket_seconds: int) -> pa.Table:
    """The collected records with the columns of their micro-batch (`handoff_bucket`, `batch_ms`), added here rather
    than in the plan (see the module's note)."""
    rows = records.num_rows
    return records.append_column("handoff_bucket", pa.array(np.full(rows, handoff_bucket(batch_ms, bucket_seconds), np.int64))).append_column(
        "batch_ms", pa.array(np.full(rows, batch_ms, np.int64))
    )


def master_rows(classified: DataFrame, event_type: str, versions: dict[int, Contract]) -> DataFrame:
    """The valid events of one type, typed by the contract-derived schema, with their ingestion columns and their
    micro-batch (`speed_batch`)."""
    parsed = classified.where(_valid_of(event_type)).select(
        _parsed(versions).alias("event"),
        "handoff_bucket",
        "ingested_at",
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        "speed_batch",
    )
    return parsed.select(
        F.col("event.event_id").alias("event_id"),
        F.col("event.event_type").alias("event_type"),
        F.col("event.schema_version").cast("int").alias("schema_version"),
        _event_time(),
        F.col("event.source").alias("source"),
        F.col("event.payload").alias("payload"),
        "handoff_bucket",
        "ingested_at",
        "kafka_partition",
        "kafka_offset",
        F.col("speed_batch").cast("bigint"),
        F.to_date("ingested_at").alias("ingest_date"),
    )


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
