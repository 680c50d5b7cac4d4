"""An independent account of what the speed layer must produce, in plain Python over the generator's records."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from schemas.views import View

_OPS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}  # fmt: skip


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def jackson_array(values: list[str]) -> str:
    """A JSON array of strings spelt as Spark's to_json (Jackson) spells it, written out by hand: no spaces, non-ASCII
    as is, short escapes where JSON has them, other control characters as upper-case \\u00XX."""

    def string(value: str) -> str:
        return '"' + "".join(_SHORT_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 else c) for c in value) + '"'

    return "[" + ",".join(string(value) for value in values) + "]"


def expected_views(events: list[dict], views: dict[str, View]) -> dict[tuple[str, str, int], dict[str, float]]:
    """(view, key, window start in epoch seconds) -> {metric: value}, over distinct valid events."""
    result: dict[tuple[str, str, int], dict[str, float]] = {}
    for view in views.values():
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for event in events:
            payload = event["payload"]
            if event["event_type"] not in view.sources:
                continue
            if not all(_OPS[c.op](payload.get(c.field), c.value) for c in view.filter):
                continue
            key = jackson_array([str(payload[name]) for name in view.dimensions])
            seconds = int(datetime.fromisoformat(event["event_time"]).timestamp())
            groups[(view.name, key, seconds - seconds % view.grain_seconds)].append(payload)
        for group, payloads in groups.items():
            metrics = {}
            for metric in view.metrics:
                values = [p.get(metric.field) for p in payloads if p.get(metric.field) is not None] if metric.field else []
                if metric.aggregate == "count":
                    metrics[metric.name] = len(payloads)
                elif metric.aggregate == "sum":
                    metrics[metric.name] = sum(values)
                elif values:
                    metrics[metric.name] = (min if metric.aggregate == "min" else max)(values)
            result[group] = metrics
    return result


def merged_speed_rows(rows, views: dict[str, View]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Combine Cassandra speed rows (one per view, key, window, bucket, batch) per (view, key, window)."""
    combined: dict[tuple[str, str, int], dict[str, float]] = {}
    aggregates = {(v.name, m.name): m.aggregate for v in views.values() for m in v.metrics}
    for row in rows:
        start = row.window_start if row.window_start.tzinfo else row.window_start.replace(tzinfo=UTC)  # the driver returns UTC
        window = int(start.timestamp())
        target = combined.setdefault((row.view_name, row.key, window), {})
        for name, value in {**(row.int_metrics or {}), **(row.float_metrics or {})}.items():
            aggregate = aggregates[(row.view_name, name)]
            if name not in target:
                target[name] = value
            elif aggregate in ("count", "sum"):
                target[name] += value
            else:
                target[name] = (min if aggregate == "min" else max)(target[name], value)
    return combined


def per_key_totals(expected: dict, view) -> dict[str, dict]:
    """The oracle's windows of one view rolled up per key over the whole range: what `top` answers."""
    aggregates = {m.name: m.aggregate for m in view.metrics}
    totals: dict[str, dict] = {}
    for (name, key, _), metrics in expected.items():
        if name != view.name:
            continue
        target = totals.setdefault(key, {})
        for metric, value in metrics.items():
            if metric not in target:
                target[metric] = value
            elif aggregates[metric] in ("count", "sum"):
                target[metric] += value
            else:
                target[metric] = (min if aggregates[metric] == "min" else max)(target[metric], value)
    return totals
