"""The batch layer's stages, in order: pick cutoff -> validate snapshot -> recompute -> validate views -> publish ->
retire. `braid batch run` runs them in one process; the Airflow DAG runs each as its own task.

Every stage works on one version record (Cassandra `batch_versions`) and is safe to run again: a stage that finds its
work done does nothing more, a stage interrupted half-way redoes the same writes with the same values, and nothing
is served before the publish stage switches the pointer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch import delta_io
from batch.cassandra_io import (
    PUBLISHED,
    PUBLISHING,
    SUPERSEDED,
    VALIDATED,
    BatchStore,
    CassandraTarget,
    VersionRecord,
    partition_columns,
    publish_partition,
)
from batch.transforms import (
    between_cutoffs,
    covered,
    expected_counts,
    first_copies,
    first_copies_given,
    incremental_view_rows,
    repeated_ids,
    view_rows,
)
from braid.errors import BraidError
from braid.layout import span_seconds
from braid.view_compiler import metric_kind, metric_maps
from schemas.contracts import Contract, Rules
from schemas.views import View

FULL, INCREMENTAL = "full", "incremental"


class QualityGateFailed(BraidError):
    """A quality suite failed: the version is not published and the served version stays."""


@dataclass(frozen=True)
class BatchContext:
    """What every stage works with: values from the settings, open connections, the declarations."""

    lake_root: str
    quality_root: str
    retire_grace: timedelta
    target: CassandraTarget
    store: BatchStore
    registry: dict[str, dict[int, Contract]]
    views: dict[str, View]
    rules: Rules
    log: Callable[[str], None]


BROADCAST_REPEATED_IDS = 2_000_000  # re-sent ids up to this many are broadcast (~100 MB at most), else a full shuffle


def deduplicate(events: DataFrame) -> DataFrame:
    """The first copy of each event, choosing the cheap plan when re-sent events are a small minority (the usual case:
    producers retry a few events, not the stream)."""
    repeated = repeated_ids(events).persist()
    if repeated.count() <= BROADCAST_REPEATED_IDS:
        return first_copies_given(events, repeated)
    repeated.unpersist()
    return first_copies(events)


def _done(record: VersionRecord) -> bool:
    return record.state in (PUBLISHED, SUPERSEDED)


def pick_cutoff(context: BatchContext, run_id: str, cutoff: int | None = None, mode: str = FULL) -> VersionRecord:
    """The version this run computes. Default cutoff: the newest handoff bucket the speed layer reports complete."""
    store = context.store
    existing = store.version_of_run(run_id)
    if existing is not None:
        context.log(f"batch: run {run_id} continues version {existing.version} (cutoff {existing.cutoff}, {existing.state})")
        return existing
    if cutoff is None:
        cutoff = store.speed_complete_through()
        if cutoff is None or cutoff < 0:
            raise BraidError("batch: the speed layer reports no complete handoff bucket yet; run it first or pass --cutoff")
    pointer = store.pointer()
    if pointer is not None and cutoff < pointer.cutoff:
        raise BraidError(f"batch: cutoff {cutoff} is below the served version's cutoff {pointer.cutoff}; a version never goes back")
    previous = store.version(pointer.version) if pointer else None
    if mode == INCREMENTAL and (previous is None or not previous.view_tables):
        context.log("batch: no published version to start from; computing in full")
        mode = FULL
    record = store.claim_version(run_id, cutoff, mode, previous.version if previous else None)
    context.log(f"batch: version {record.version}, cutoff {record.cutoff}, {record.mode}")
    return record


def _master(spark: SparkSession, context: BatchContext, snapshot: Mapping[str, int]) -> dict[str, DataFrame]:
    """Every event type's master table at the pinned snapshot; an empty frame for a type with no table yet."""
    from schemas.spark_types import master_schema

    frames = {}
    for event_type, versions in context.registry.items():
        path = delta_io.master_path(context.lake_root, event_type)
        if event_type in snapshot:
            frames[event_type] = delta_io.read_at(spark, path, snapshot[event_type])
        else:
            frames[event_type] = spark.createDataFrame([], master_schema(versions))
    return frames


def _cutoffs(context: BatchContext, record: VersionRecord) -> int | None:
    """The previous version's cutoff in incremental mode: the events after it are the new ones."""
    if record.mode != INCREMENTAL:
        return None
    return context.store.version(record.previous_version).cutoff


def validate_snapshot(spark: SparkSession, context: BatchContext, record: VersionRecord) -> VersionRecord:
    """Pin the master dataset's Delta versions for this version, then run the snapshot suites over the de-duplicated
    events it adds (all of them in full mode, those since the previous cutoff in incremental mode)."""
    from batch import quality  # Great Expectations takes ~3 s to import: only the gates' stages pay it

    if _done(record):
        return record
    if not record.snapshot:
        snapshot = {}
        for event_type in context.registry:
            version = delta_io.latest_version(spark, delta_io.master_path(context.lake_root, event_type))
            if version is not None:
                snapshot[event_type] = version
        context.store.record_snapshot(record.version, snapshot)
        record = context.store.version(record.version)
    master = _master(spark, context, record.snapshot)
    previous_cutoff = _cutoffs(context, record)
    reports = []
    for event_type, frame in master.items():
        scope = covered(frame, record.cutoff) if previous_cutoff is None else between_cutoffs(frame, previous_cutoff, record.cutoff)
        checks = quality.snapshot_expectations(event_type, context.registry[event_type], context.rules)
        frame = quality.snapshot_frame(deduplicate(scope)).persist()  # every expectation is a Spark job over it
        try:
            reports.append(quality.validate(frame, f"snapshot_{event_type}", checks, context.quality_root))
        finally:
            frame.unpersist()
    _gate(context, record, "snapshot", reports)
    return record


def recompute(spark: SparkSession, context: BatchContext, record: VersionRecord) -> VersionRecord:
    """Every declared view over the covered events, written to its Delta table as this version."""
    if _done(record):
        return record
    master = _master(spark, context, record.snapshot)
    covered_by_type = {t: covered(frame, record.cutoff) for t, frame in master.items()}
    if record.mode == INCREMENTAL:
        previous = context.store.version(record.previous_version)
        new_copies = {t: between_cutoffs(frame, previous.cutoff, record.cutoff) for t, frame in master.items()}
    else:
        firsts = {t: deduplicate(frame).persist() for t, frame in covered_by_type.items()}
    tables, counts, events = {}, {}, None
    try:
        if record.mode == FULL:
            events = sum(frame.count() for frame in firsts.values())
        for view in context.views.values():
            path = delta_io.view_path(context.lake_root, view.name)
            if record.mode == INCREMENTAL and view.name in previous.view_tables:
                before = delta_io.read_at(spark, path, previous.view_tables[view.name]).drop("batch_version", "cutoff")
                rows = incremental_view_rows(covered_by_type, new_copies, before, view, context.registry)
            else:
                rows = view_rows(firsts if record.mode == FULL else {t: first_copies(f) for t, f in covered_by_type.items()}, view, context.registry)
            stamped = rows.withColumn("batch_version", F.lit(record.version).cast("bigint")).withColumn("cutoff", F.lit(record.cutoff).cast("bigint"))
            tables[view.name], counts[view.name] = delta_io.write_view_table(stamped, path, batch_version=record.version, cutoff=record.cutoff)
            context.log(f"batch: view {view.name}: {counts[view.name]} rows (Delta version {tables[view.name]})")
    finally:
        if record.mode == FULL:
            for frame in firsts.values():
                frame.unpersist()
    context.store.record_view_tables(record.version, tables, counts, events)
    return context.store.version(record.version)


def _view_frame(spark: SparkSession, context: BatchContext, record: VersionRecord, view: View) -> DataFrame:
    return delta_io.read_at(spark, delta_io.view_path(context.lake_root, view.name), record.view_tables[view.name])


def validate_views(spark: SparkSession, context: BatchContext, record: VersionRecord) -> VersionRecord:
    """Each view's suite: counts never negative, one row per (key, window), and each count metric's total equal to
    the number of distinct covered events the view's filter keeps, counted straight from the snapshot."""
    from batch import quality  # Great Expectations takes ~3 s to import: only the gates' stages pay it

    if _done(record):
        return record
    master = _master(spark, context, record.snapshot)
    covered_by_type = {t: covered(frame, record.cutoff) for t, frame in master.items()}
    totals = expected_counts(covered_by_type, list(context.views.values())).first().asDict()  # one pass per event type
    reports = []
    for view in context.views.values():
        total = totals[view.name] or 0
        kinds = {metric.name: metric_kind(metric, context.registry, view) for metric in view.metrics}
        counts = {metric.name: total for metric in view.metrics if metric.aggregate == "count"}
        checks = quality.view_frame_expectations(view, kinds, counts)
        frame = _view_frame(spark, context, record, view).drop("batch_version", "cutoff")
        reports.append(quality.validate(frame, f"view_{view.name}", checks, context.quality_root))
    _gate(context, record, "views", reports)
    context.store.set_state(record.version, VALIDATED)
    return context.store.version(record.version)


def _gate(context: BatchContext, record: VersionRecord, what: str, reports: list) -> None:
    summary = "; ".join(report.summary() for report in reports)
    context.store.record_quality(record.version, f"{what}: {summary}")
    failed = [report for report in reports if not report.success]
    docs = next((report.docs_index for report in reports if report.docs_index), None)
    for report in reports:
        context.log(f"batch: quality {report.summary()}")
    if failed:
        raise QualityGateFailed(
            f"batch: version {record.version} failed its {what} quality gate and is not published "
            f"({'; '.join(report.summary() for report in failed)}); Data Docs: {docs}"
        )


def publish(spark: SparkSession, context: BatchContext, record: VersionRecord) -> VersionRecord:
    """Write every row of the version to Cassandra, then switch the pointer to it in one step."""
    if _done(record):
        context.log(f"batch: version {record.version} is already published")
        return record
    if record.state not in (VALIDATED, PUBLISHING):
        raise BraidError(f"batch: version {record.version} is {record.state}, not validated; run the quality gate first")
    context.store.set_state(record.version, PUBLISHING)
    readable = context.store.oldest_readable(context.retire_grace)
    retire_below = readable.version if readable else None
    frames = []
    for view in context.views.values():
        kinds = {metric.name: metric_kind(metric, context.registry, view) for metric in view.metrics}
        span_ms = span_seconds(view.grain_seconds, context.rules.span_windows) * 1000
        ints, floats = metric_maps(view, kinds)
        frames.append(
            _view_frame(spark, context, record, view).select(
                F.lit(view.name).alias("view_name"),
                "key",
                (F.floor(F.unix_millis("window_start") / span_ms) * span_ms).alias("span_ms"),
                F.unix_millis("window_start").alias("window_ms"),
                ints,
                floats,
            )
        )
    rows = reduce(lambda left, right: left.unionByName(right), frames).persist()
    target, version = context.target, record.version
    written = 0
    try:
        for table in ("batch_views", "batch_view_windows"):
            # A Cassandra partition's rows together in one task, in order: each partition is written by few batches.
            columns = partition_columns(table)
            ordered = rows.repartition(*columns).sortWithinPartitions(*columns, "key", "window_ms")
            written += ordered.rdd.mapPartitions(lambda part, table=table: publish_partition(part, target, table, version, retire_below)).sum()
    finally:
        rows.unpersist()
    context.store.switch_pointer(record)
    context.log(f"batch: published version {record.version} (cutoff {record.cutoff}): {written} rows")
    return context.store.version(record.version)


def retire(context: BatchContext) -> int:
    """Delete the speed rows every readable version covers: buckets up to the oldest readable version's cutoff."""
    readable = context.store.oldest_readable(context.retire_grace)
    if readable is None:
        return 0
    retired = context.store.speed_retired_through()
    if retired is not None and retired >= readable.cutoff:
        return 0
    deleted = context.store.retire_speed_buckets(list(context.views), readable.cutoff, context.rules.view_shards)
    context.log(f"batch: retired speed buckets up to {readable.cutoff} ({deleted} partitions)")
    return deleted
