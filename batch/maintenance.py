"""Upkeep the batch layer schedules daily: Delta compaction and VACUUM, and deletion of superseded batch versions.

VACUUM keeps at least `retention_hours` of history (never under Delta's 7-day default check), so time travel to the
snapshot of any recent version, and readers of older files, keep working."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batch import delta_io
from batch.cassandra_io import RETIRED, SUPERSEDED
from batch.stages import BatchContext
from braid.layout import span_seconds

MIN_RETENTION_HOURS = 168


def tables(spark: SparkSession, context: BatchContext) -> list[str]:
    paths = [delta_io.master_path(context.lake_root, t) for t in context.registry]
    paths += [f"{context.lake_root}/quarantine"] + [delta_io.view_path(context.lake_root, v) for v in context.views]
    return [path for path in paths if delta_io.latest_version(spark, path) is not None]


def compact_and_vacuum(spark: SparkSession, context: BatchContext, retention_hours: int) -> list[str]:
    if retention_hours < MIN_RETENTION_HOURS:
        raise ValueError(f"VACUUM retention {retention_hours} h is below {MIN_RETENTION_HOURS} h: readers and time travel could lose files")
    done = []
    for path in tables(spark, context):
        delta_io.optimize(spark, path)
        delta_io.vacuum(spark, path, retention_hours)
        done.append(path)
        context.log(f"maintenance: compacted and vacuumed {path}")
    return done


def _delete_partitions(rows: Iterator[Any], target, below: int) -> Iterator[int]:
    from cassandra.concurrent import execute_concurrent_with_args

    cluster, session = target.connect()
    try:
        delete = session.prepare("DELETE FROM batch_views WHERE view_name = ? AND key = ? AND span_start = ? AND version < ?")
        keys = [(row.view_name, row.key, datetime.fromtimestamp(row.span_ms / 1000, UTC), below) for row in rows]
        if keys:
            execute_concurrent_with_args(session, delete, keys, concurrency=target.concurrency, raise_on_first_error=True)
        yield len(keys)
    finally:
        cluster.shutdown()


def retire_versions(spark: SparkSession, context: BatchContext) -> int:
    """Delete the rows of every superseded version older than the oldest one a reader may still use, and mark them
    retired. A publish already does this in each partition it writes; this pass also reaches the partitions a newer
    version no longer has (a view whose declaration changed). Partitions come from the view tables' Delta history."""
    readable = context.store.oldest_readable(context.retire_grace)
    if readable is None:
        return 0
    old = [r for r in context.store.versions(limit=200) if r.state == SUPERSEDED and r.version < readable.version]
    total = 0
    for view in context.views.values():
        path = delta_io.view_path(context.lake_root, view.name)
        span_ms = span_seconds(view.grain_seconds, context.rules.span_windows) * 1000
        frames = [delta_io.read_at(spark, path, v) for v in sorted({r.view_tables[view.name] for r in old if view.name in r.view_tables})]
        if not frames:
            continue
        keys = reduce(lambda left, right: left.unionByName(right, allowMissingColumns=True), [f.select("key", "window_start") for f in frames])
        located = keys.select(
            F.lit(view.name).alias("view_name"), "key", (F.floor(F.unix_millis("window_start") / span_ms) * span_ms).alias("span_ms")
        ).distinct()
        target, below = context.target, readable.version
        total += located.rdd.mapPartitions(lambda part: _delete_partitions(part, target, below)).sum()
    for record in old:
        context.store.set_state(record.version, RETIRED)
    context.log(f"maintenance: retired {len(old)} superseded versions below {readable.version} ({total} partitions)")
    return total
