"""Delta Lake reads and writes of the batch layer: pinned snapshots of the master dataset, versioned view tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from braid.errors import BraidError

APP_ID = "braid-batch"


def master_path(lake_root: str, event_type: str) -> str:
    return f"{lake_root}/master/{event_type}"


def view_path(lake_root: str, view_name: str) -> str:
    return f"{lake_root}/views/{view_name}"


def probe_writable(lake_root: str) -> None:
    """Refuse in a moment, before a Spark driver starts, a run whose view tables could not be written: a lake on a
    local disk gone read-only (or without permission) would otherwise fail only after the whole recompute. A lake
    behind a URI (s3a://, hdfs://) is left to Spark: a probe there costs a request and proves little."""
    if "://" in lake_root and not lake_root.startswith("file:"):
        return
    views = Path(lake_root.removeprefix("file://").removeprefix("file:")) / "views"
    probe = views / f".braid-write-probe-{os.getpid()}"
    try:
        views.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise BraidError(f"storage: cannot create {probe} ({error.strerror})") from None


def latest_version(spark: SparkSession, path: str) -> int | None:
    """The newest committed version of a Delta table, or None when there is no table (yet)."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def read_at(spark: SparkSession, path: str, version: int) -> DataFrame:
    """One version of a table: what a batch version read stays readable (time travel) until VACUUM removes it."""
    return spark.read.format("delta").option("versionAsOf", version).load(path)


def write_view_table(frame: DataFrame, path: str, *, batch_version: int, cutoff: int) -> tuple[int, int]:
    """Replace the view table by this batch version's rows; returns the Delta version holding them and their number.

    Idempotent: Delta skips a write whose (application id, batch version) it has already committed, and the version
    is then found again in the table's history by the metadata the first write left. The number of rows is the
    commit's own `numOutputRows` (the overwrite wrote every row of the version), so the table is not read back to
    count it; a table whose history keeps no metrics is counted."""
    from delta.tables import DeltaTable

    spark = frame.sparkSession
    metadata = json.dumps({"batch_version": batch_version, "cutoff": cutoff}, sort_keys=True)
    (
        frame.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")  # a changed view declaration replaces the table's columns
        .option("txnAppId", APP_ID)
        .option("txnVersion", batch_version)
        .option("userMetadata", metadata)
        .save(path)
    )
    history = DeltaTable.forPath(spark, path).history(50).select("version", "userMetadata", "operationMetrics").collect()
    for row in history:
        if row.userMetadata == metadata:
            written = (row.operationMetrics or {}).get("numOutputRows")
            return row.version, int(written) if written is not None else read_at(spark, path, row.version).count()
    raise RuntimeError(f"{path}: no commit of batch version {batch_version} in the table's recent history")


def optimize(spark: SparkSession, path: str) -> None:
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, path).optimize().executeCompaction()


# VACUUM lists the table's folders in a Spark job of `parallelPartitionDiscovery.parallelism` tasks, 10,000 by default
# whatever the table's size. On the 2-core development machine, the seven small tables of the batch tests' lake, one
# run alternating: 17.5-41.3 s each (163 s in all) that way, 1.3-2.8 s (13 s) with two tasks per core (2026-12-07).
# The cores a cluster has are enough tasks for a listing.
_LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


def vacuum(spark: SparkSession, path: str, retention_hours: int) -> None:
    from delta.tables import DeltaTable

    before = spark.conf.get(_LISTING_PARALLELISM)
    spark.conf.set(_LISTING_PARALLELISM, str(max(2, 2 * spark.sparkContext.defaultParallelism)))
    try:
        DeltaTable.forPath(spark, path).vacuum(float(retention_hours))
    finally:
        spark.conf.set(_LISTING_PARALLELISM, before)
