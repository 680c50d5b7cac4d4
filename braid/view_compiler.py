"""The one compiler of view declarations into Spark operations, used by the speed and the batch layer alike.

Input: events as rows with the envelope columns, `event_time` as a timestamp, the `payload` struct and (for the speed
layer) `handoff_bucket`. Output: one row per (view, key, window_start[, handoff_bucket]) with one column per metric.
The same function works on a batch DataFrame and on a micro-batch; nothing here reads or writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas.contracts import Contract
from schemas.views import Condition, Metric, View


def _condition(condition: Condition, payload: str = "payload") -> Column:
    column = F.col(f"{payload}.{condition.field}")
    value = condition.value
    match condition.op:
        case "==":
            return column == F.lit(value)
        case "!=":
            return column != F.lit(value)
        case "in":
            return column.isin(list(value))
        case "not_in":
            return ~column.isin(list(value))
        case "<":
            return column < F.lit(value)
        case "<=":
            return column <= F.lit(value)
        case ">":
            return column > F.lit(value)
        case ">=":
            return column >= F.lit(value)
    raise ValueError(f"unknown operator {condition.op!r}")


def view_filter(view: View, payload: str = "payload") -> Column:
    """The view's filter as one condition (true when it declares none). `payload`: the payload struct's column."""
    return reduce(lambda left, right: left & right, [_condition(c, payload) for c in view.filter], F.lit(True))


def metric_kind(metric: Metric, registry: dict[str, dict[int, Contract]], view: View) -> str:
    """'int' or 'float': how the metric is stored. Counts, and aggregates of integer fields, stay exact integers."""
    if metric.aggregate == "count":
        return "int"
    for source in view.sources:
        for contract in registry[source].values():
            spec = contract.field(metric.field or "")
            if spec is not None and spec.type == "number":
                return "float"
    return "int"


def _aggregate(metric: Metric, kind: str) -> Column:
    if metric.aggregate == "count":
        return F.count(F.lit(1)).alias(metric.name)
    value = F.col(f"payload.{metric.field}").cast("bigint" if kind == "int" else "double")
    if metric.aggregate == "sum":
        # A sum over no non-null value is 0, not null: the merge adds sums, and 0 is their identity.
        return F.coalesce(F.sum(value), F.lit(0).cast("bigint" if kind == "int" else "double")).alias(metric.name)
    return (F.min(value) if metric.aggregate == "min" else F.max(value)).alias(metric.name)


def view_key(view: View, payload: str = "payload") -> Column:
    """The view key as text: a JSON array of the dimension values, unambiguous whatever the values contain."""
    return F.to_json(F.array(*[F.col(f"{payload}.{name}").cast("string") for name in view.dimensions]))


def window_start(view: View, event_time: Column | None = None) -> Column:
    seconds = view.grain_seconds
    time = F.col("event_time") if event_time is None else event_time
    return F.timestamp_seconds(F.floor(F.unix_seconds(time) / seconds) * seconds)


def metric_maps(view: View, kinds: Mapping[str, str]) -> tuple[Column, Column]:
    """The metric columns as the two maps Cassandra stores (integer metrics, float metrics); kinds: metric -> 'int'|'float'."""

    def as_map(kind: str, sql_type: str) -> Column:
        names = [metric.name for metric in view.metrics if kinds[metric.name] == kind]
        if not names:
            return F.lit(None).cast(f"map<string,{sql_type}>")
        return F.create_map(*[part for name in names for part in (F.lit(name), F.col(name).cast(sql_type))])

    return as_map("int", "bigint").alias("int_metrics"), as_map("float", "double").alias("float_metrics")


_COMBINE = {"count": F.sum, "sum": F.sum, "min": F.min, "max": F.max}


def aggregate_view(
    events_by_type: Mapping[str, DataFrame],
    view: View,
    registry: dict[str, dict[int, Contract]],
    *,
    by_handoff_bucket: bool,
) -> DataFrame:
    """Events (one DataFrame per event type) -> rows (view, key, window_start[, handoff_bucket], <metric>...)."""
    groups = ["view", "key", "window_start"] + (["handoff_bucket"] if by_handoff_bucket else [])
    kinds = {metric.name: metric_kind(metric, registry, view) for metric in view.metrics}
    partials = []
    for source in view.sources:  # payload structs differ between types: aggregate each, then combine
        selected = events_by_type[source]
        if view.filter:
            selected = selected.where(view_filter(view))
        keyed = selected.select(
            F.lit(view.name).alias("view"),
            view_key(view).alias("key"),
            window_start(view).alias("window_start"),
            *([F.col("handoff_bucket")] if by_handoff_bucket else []),
            "payload",
        )
        partials.append(keyed.groupBy(*groups).agg(*[_aggregate(metric, kinds[metric.name]) for metric in view.metrics]))
    if len(partials) == 1:
        return partials[0]
    union = reduce(lambda left, right: left.unionByName(right), partials)
    return union.groupBy(*groups).agg(*[_COMBINE[m.aggregate](m.name).alias(m.name) for m in view.metrics])


CELL_FIELDS = "view:string,key:string,window_ms:bigint,metric:string,aggregate:string,int_in:bigint,float_in:double"


class ViewCells:
    """Every view's inputs from one event, as an array of cells: one per (view, metric) the event counts towards, with
    the view's key, the start of its window (epoch ms), and the metric's input value. `aggregate_cells` combines them.

    The same keys, windows, filters and metric inputs as `aggregate_view`, in long form. The speed layer collects the
    cells of a micro-batch with its other figures in one Spark stage and aggregates them in the driver: one aggregation
    per view (a shuffle each, some forty DataFrame operations to analyse, code generated per task) cost more than the
    rows of a small micro-batch. The expressions are built once, here. `kinds`: (view, metric) -> 'int' | 'float'."""

    def __init__(self, views: list[View], kinds: Mapping[tuple[str, str], str], events: Mapping[str, tuple[str, Column]]) -> None:
        """`events`: per source, the column holding its payload struct and its event time (as a timestamp)."""
        self._arrays: dict[str, Column] = {}
        for source in sorted({source for view in views for source in view.sources}):
            payload, event_time = events[source]
            entries = []
            for view in views:
                if source not in view.sources:
                    continue
                key, window = view_key(view, payload), F.unix_millis(window_start(view, event_time))
                for metric in view.metrics:
                    kind = kinds[(view.name, metric.name)]
                    value = F.lit(1) if metric.aggregate == "count" else F.col(f"{payload}.{metric.field}")
                    entry = F.struct(
                        F.lit(view.name).alias("view"), key.alias("key"), window.alias("window_ms"),
                        F.lit(metric.name).alias("metric"), F.lit(metric.aggregate).alias("aggregate"),
                        (value.cast("bigint") if kind == "int" else F.lit(None).cast("bigint")).alias("int_in"),
                        (value.cast("double") if kind == "float" else F.lit(None).cast("double")).alias("float_in"),
                    )  # fmt: skip
                    # A cell the view's filter rejects is null, and dropped by `aggregate_cells`.
                    entries.append(F.when(view_filter(view, payload), entry) if view.filter else entry)
            self._arrays[source] = F.array(*entries).alias("cells")

    def column(self, source: str) -> Column:
        """The cells of an event of type `source`."""
        return self._arrays[source]


def aggregate_cells(cells: pa.Table, groups: list[str]) -> pa.Table:
    """The aggregates of cells (columns of CELL_FIELDS plus `groups`): one row per (groups..., view, key, window_ms,
    metric) with `int_value` and `float_value`, each metric with its aggregate's own semantics, as `_aggregate`: a
    count counts cells, a sum over no non-null value is 0, a min or max over none is null."""
    keys = [*groups, "view", "key", "window_ms", "metric", "aggregate"]
    grouped = cells.group_by(keys, use_threads=False).aggregate([
        ("int_in", "sum"), ("int_in", "min"), ("int_in", "max"),
        ("float_in", "sum"), ("float_in", "min"), ("float_in", "max"),
        ([], "count_all"),
    ])  # fmt: skip
    aggregate = grouped.column("aggregate")

    def pick(prefix: str, count: pa.Array | None, zero: pa.Scalar) -> pa.Array:
        by = {name: pc.equal(aggregate, name) for name in ("count", "sum", "min", "max")}
        total = pc.coalesce(grouped.column(f"{prefix}_sum"), zero)
        value = pc.if_else(by["sum"], total, pc.if_else(by["min"], grouped.column(f"{prefix}_min"), grouped.column(f"{prefix}_max")))
        return value if count is None else pc.if_else(by["count"], count, value)

    ints = pick("int_in", grouped.column("count_all"), pa.scalar(0, pa.int64()))
    floats = pc.if_else(pc.equal(aggregate, "count"), pa.scalar(None, pa.float64()), pick("float_in", None, pa.scalar(0.0, pa.float64())))
    return pa.table({
        **{name: grouped.column(name) for name in [*groups, "view", "key", "window_ms", "metric"]},
        "int_value": ints.cast(pa.int64()), "float_value": floats.cast(pa.float64()),
    })  # fmt: skip
