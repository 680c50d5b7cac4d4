"""The one compiler of view declarations into Spark operations, used by the speed and the batch layer alike.

Input: events as rows with the envelope columns, `event_time` as a timestamp, the `payload` struct and (for the speed
layer) `handoff_bucket`. Output: one row per (view, key, window_start[, handoff_bucket]) with one column per metric.
The same function works on a batch DataFrame and on a micro-batch; nothing here reads or writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from schemas.contracts import Contract
from schemas.views import Condition, Metric, View


def _condition(condition: Condition) -> Column:
    column = F.col(f"payload.{condition.field}")
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


def view_filter(view: View) -> Column:
    """The view's filter as one condition (true when it declares none)."""
    return reduce(lambda left, right: left & right, [_condition(c) for c in view.filter], F.lit(True))


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


def view_key(view: View) -> Column:
    """The view key as text: a JSON array of the dimension values, unambiguous whatever the values contain."""
    return F.to_json(F.array(*[F.col(f"payload.{name}").cast("string") for name in view.dimensions]))


def window_start(view: View) -> Column:
    seconds = view.grain_seconds
    return F.timestamp_seconds(F.floor(F.unix_seconds(F.col("event_time")) / seconds) * seconds)


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
