"""Pure DataFrame transforms of the batch layer: master dataset snapshot -> covered events -> exact views.

No reads, writes or settings here. Every view comes from `braid.view_compiler`, the compiler the speed layer uses.

Which copy of a duplicated event counts: the first to arrive, by (ingested_at, Kafka partition, Kafka offset). The
speed layer counts exactly that copy too (the first within its micro-batch by partition and offset, none already seen
in an earlier batch), so the two layers agree on every event's window at the handoff bucket boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from braid.view_compiler import aggregate_view, view_filter, view_key, window_start
from schemas.contracts import Contract
from schemas.views import View

ARRIVAL_ORDER = ("ingested_at", "kafka_partition", "kafka_offset")


def covered(master: DataFrame, cutoff: int) -> DataFrame:
    """Every copy of every event the batch version with cutoff `cutoff` covers (merge contract, rule 2)."""
    return master.where(F.col("handoff_bucket") <= F.lit(cutoff))


def between_cutoffs(master: DataFrame, previous_cutoff: int, cutoff: int) -> DataFrame:
    return master.where((F.col("handoff_bucket") > F.lit(previous_cutoff)) & (F.col("handoff_bucket") <= F.lit(cutoff)))


def first_copies(events: DataFrame) -> DataFrame:
    """One row per event_id: the copy that arrived first. An aggregate, not a sort: one shuffle by event_id."""
    columns = events.columns
    first = F.min_by(F.struct(*[F.col(c) for c in columns]), F.struct(*[F.col(c) for c in ARRIVAL_ORDER]))
    return events.groupBy("event_id").agg(first.alias("first")).select(*[F.col(f"first.{c}").alias(c) for c in columns])


def repeated_ids(events: DataFrame) -> DataFrame:
    """The event ids with more than one copy: a shuffle of ids only."""
    return events.groupBy("event_id").agg(F.count(F.lit(1)).alias("copies")).where(F.col("copies") > 1).select("event_id")


def first_copies_given(events: DataFrame, repeated: DataFrame) -> DataFrame:
    """`first_copies`, when the repeated ids are few enough to broadcast: events with one copy pass through without a
    shuffle, and only the re-sent ones are grouped. The same rows as `first_copies`, at a fraction of the shuffle."""
    single = events.join(F.broadcast(repeated), "event_id", "left_anti")
    resent = first_copies(events.join(F.broadcast(repeated), "event_id", "left_semi"))
    return single.unionByName(resent.select(*events.columns))


def view_rows(events_by_type: Mapping[str, DataFrame], view: View, registry: dict[str, dict[int, Contract]]) -> DataFrame:
    """The exact view over de-duplicated events: (view, key, window_start, <metric>...)."""
    return aggregate_view(events_by_type, view, registry, by_handoff_bucket=False)


def touched_windows(new_copies_by_type: Mapping[str, DataFrame], view: View) -> DataFrame:
    """(key, window_start) of every window a copy that arrived since the previous cutoff falls in."""
    frames = [
        new_copies_by_type[source].select(view_key(view).alias("key"), window_start(view).alias("window_start"))
        for source in view.sources
    ]
    return reduce(lambda left, right: left.unionByName(right), frames).distinct()


def incremental_view_rows(
    covered_by_type: Mapping[str, DataFrame],
    new_copies_by_type: Mapping[str, DataFrame],
    previous: DataFrame,
    view: View,
    registry: dict[str, dict[int, Contract]],
) -> DataFrame:
    """The same rows as `view_rows` over every covered event, recomputing only the windows touched since the previous
    version and keeping the previous version's rows for the others.

    Exact, duplicates included: a window untouched since the previous cutoff holds the same first copies as before
    (a later copy never displaces an earlier one). For a touched window, every copy of every event with a copy in it
    is gathered from the whole covered snapshot, so its first copy is chosen as in a full recompute.
    """
    touched = touched_windows(new_copies_by_type, view)
    recomputed = {}
    for source in view.sources:
        events = covered_by_type[source]
        located = events.withColumn("key", view_key(view)).withColumn("window_start", window_start(view))
        candidates = located.join(F.broadcast(touched), ["key", "window_start"], "left_semi").select("event_id").distinct()
        copies = events.join(F.broadcast(candidates), "event_id", "left_semi")
        firsts = first_copies(copies)
        in_touched = firsts.withColumn("key", view_key(view)).withColumn("window_start", window_start(view))
        recomputed[source] = in_touched.join(F.broadcast(touched), ["key", "window_start"], "left_semi").drop("key", "window_start")
    kept = previous.join(touched, ["key", "window_start"], "left_anti")
    return kept.unionByName(view_rows(recomputed, view, registry).select(*previous.columns))


def expected_counts(covered_by_type: Mapping[str, DataFrame], views: Sequence[View]) -> DataFrame:
    """The number of distinct covered events each view counts, computed without grouping by key or window: what the
    quality gate reconciles each count metric's total with. One row, one column per view (its name).

    One aggregate per event type for all the views at once: every view filters the same first copies."""
    totals = []
    for source, frame in covered_by_type.items():
        if not any(source in view.sources for view in views):
            continue
        firsts = first_copies(frame.select("event_id", "payload", *ARRIVAL_ORDER))
        totals.append(firsts.agg(*[
            (F.count_if(view_filter(view)) if source in view.sources else F.lit(0)).cast("bigint").alias(view.name) for view in views
        ]))  # fmt: skip
    return reduce(lambda left, right: left.unionByName(right), totals).agg(*[F.sum(view.name).alias(view.name) for view in views])
