"""Delta Lake reads and writes of the speed layer: appends tagged with (application id, micro-batch id), so that a
group redone after a crash adds nothing twice."""

from __future__ import annotations

import json
from functools import reduce

from pyspark.sql import DataFrame, SparkSession


def master_path(lake_root: str, event_type: str) -> str:
    return f"{lake_root}/master/{event_type}"


def quarantine_path(lake_root: str) -> str:
    return f"{lake_root}/quarantine"


# Rows per file the speed layer aims at: a micro-batch's rows go to as few files as that allows, rather than one file
# per Kafka partition, so a table gains a file or two per batch instead of six (fewer files to write, to list in the
# log and to open when the next batch looks for earlier copies), while a large batch still writes in parallel.
ROWS_PER_FILE = 200_000

# The columns Delta keeps min/max statistics of in the tables the speed layer creates: the ones readers filter by
# (the batch layer's cutoff and the de-duplication look-up by handoff bucket and micro-batch; event time). By default
# Delta takes the first 32 leaf columns, which are the event's payload: collected on every append and parsed for every
# scan (15% of a micro-batch, measured), while the bucket and batch columns came after the cut. Set per table when
# the append creates it (a session-wide default would reach every table the session writes, which may lack them).
STATS_COLUMNS = ("event_time", "handoff_bucket", "ingested_at", "speed_batch", "kafka_partition", "kafka_offset")

SPEED_SESSION_CONF = {
    # Delta writes a checkpoint every 10 commits by default; at one commit per table per micro-batch that is a 2-3 s
    # stall every 10th batch. Every 100th instead: readers replay at most 100 small JSON commits.
    "spark.databricks.delta.properties.defaults.checkpointInterval": "100",
    # Spark caches 100 compiled classes by default. Every micro-batch plans new code (its id and timestamp are
    # literals in it) and Delta's log handling brings many more, so the cache thrashed and tasks recompiled the same
    # projections batch after batch (17% of a micro-batch, measured). Static: set at session start. Not many more
    # than that: each micro-batch loads about 50 new classes, and their metadata (metaspace) and compiled code stay
    # until the cache lets them go; at 2,000 entries that took 40 micro-batches, half an hour at 4,000 events/s,
    # and the driver's memory outside the heap grew all that time (895 -> 1,031 MiB in 16 minutes of the soak).
    "spark.sql.codegen.cache.maxEntries": "500",
    # The driver's status store keeps the last 1,000 jobs and stages and 1,000 SQL executions with their plans and
    # metrics by default, with or without the UI: a micro-batch runs about 20, so a new job's store grew by a few MiB
    # every ten minutes for its first hour (class histograms of the soak). Enough for the last few micro-batches.
    "spark.ui.retainedJobs": "200",
    "spark.ui.retainedStages": "200",
    "spark.ui.retainedTasks": "20000",
    "spark.sql.ui.retainedExecutions": "100",
    # The archive rebuilds a micro-batch it has not committed from the offset log (speed/archive.py); Spark's default
    # keeps the last 100, a minute at the view path's pace. The archive's back-pressure keeps it far closer than this.
    "spark.sql.streaming.minBatchesToRetain": "2000",
    # The view path caches each classified micro-batch until the archive has committed it. Compressing the cache
    # (run-length and dictionary encoders, each scanning every column for its statistics first) cost more than it
    # saved: the rows are JSON text, held for seconds.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}


def append_once(frame: DataFrame, path: str, *, app_id: str, batch_id: int, rows: int | None = None) -> None:
    """Append unless this (app_id, batch_id) already committed to the table (Delta's txnAppId/txnVersion): a replayed
    group adds nothing. Only for a group a previous version of the archive left half-committed (`append_tagged`)."""
    _writer(frame, rows).option("txnAppId", app_id).option("txnVersion", batch_id).save(path)


def append_tagged(frame: DataFrame, path: str, *, app_id: str, batch_id: int, rows: int | None = None) -> None:
    """Append, the commit tagged with its writer and group (commitInfo.userMetadata) for `committed` to find.

    Not Delta's txnAppId/txnVersion: to look a transaction up, Delta 4.4 rebuilds the table's whole state (the
    checkpoint and every commit since, three Spark jobs) before every append, and that grows with the table. Measured
    on one warm session, 2,000-row appends: 0.81 s each with a transaction id, 0.24 s tagged. Only a group redone
    after a crash needs the check, and `committed` does it from the last commits' metadata."""
    _writer(frame, rows).option("userMetadata", json.dumps({"app": app_id, "batch": batch_id}, sort_keys=True)).save(path)


# Commit times come from the file system that holds the log, the manifest's from the archive's clock: how far apart
# they may be. A group's commits cannot be older than its manifest by more than this.
CLOCK_SKEW_MS = 3_600_000


def committed(spark: SparkSession, path: str, *, app_id: str, batch_id: int, since_ms: int) -> bool | None:
    """Whether `append_tagged` committed (app_id, batch_id) to the table. Reads the history newest first, down to
    `since_ms` (when the group's manifest was written: its commits come after it) or the writer's previous group.
    None when the history ends before either (Delta deletes commits past its log retention, 30 days by default, at
    a checkpoint): `holds_batches` then looks at the rows."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    if not DeltaTable.isDeltaTable(spark, path):
        return False
    table, limit = DeltaTable.forPath(spark, path), 16
    while True:
        commits = table.history(limit).select("version", F.unix_millis("timestamp").alias("ms"), "userMetadata").collect()  # newest first
        for commit in commits:
            tag = _tag(commit.userMetadata)
            if tag is not None and tag[0] == app_id:
                return tag[1] >= batch_id  # else the writer's previous group: this one never committed here
            if commit.ms < since_ms - CLOCK_SKEW_MS:
                return False
        if len(commits) < limit:
            return False if not commits or commits[-1].version == 0 else None
        limit *= 4


def holds_batches(spark: SparkSession, path: str, batches: dict[int, int]) -> bool:
    """Whether the table holds rows of any of these micro-batches (id -> timestamp in ms). The timestamp tells them
    from the micro-batches of the same ids of another checkpoint; both columns have statistics, so few files are read."""
    from pyspark.sql import functions as F

    rows = spark.read.format("delta").load(path)
    match = [(F.col("speed_batch") == batch) & (F.col("ingested_at") == F.timestamp_millis(F.lit(ms))) for batch, ms in batches.items()]
    return bool(match) and rows.where(reduce(lambda left, right: left | right, match)).limit(1).count() > 0


def _tag(user_metadata: str | None) -> tuple[str, int] | None:
    try:
        tag = json.loads(user_metadata) if user_metadata else None
        return (tag["app"], int(tag["batch"])) if isinstance(tag, dict) else None
    except (ValueError, KeyError, TypeError):
        return None  # another writer's metadata


def _writer(frame: DataFrame, rows: int | None):
    """`rows`, when known, sets the number of files (one per ROWS_PER_FILE rows)."""
    if rows is not None:
        frame = frame.coalesce(max(1, -(-rows // ROWS_PER_FILE)))
    return (
        frame.write.format("delta")
        .mode("append")
        .option("mergeSchema", "true")  # a new optional field in a new contract version extends the table
        .option("delta.dataSkippingStatsColumns", ",".join(name for name in STATS_COLUMNS if name in frame.columns))
        .partitionBy("ingest_date")
    )


def read_table(spark: SparkSession, path: str) -> DataFrame | None:
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return spark.read.format("delta").load(path)
