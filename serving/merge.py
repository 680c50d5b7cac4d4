"""The merge of DESIGN.md's contract, rule 4, as pure functions over rows already read:
`combine(batch_v(key, window), speed(key, window, h) for h > H_v)`, each metric with its own combine.

Provenance of a merged value: "batch" (only the batch version had it), "speed" (only speed rows since the cutoff),
or "both" (the batch version and speed rows added to it, e.g. a late event after the cutoff in an old window).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Number = int | float
Source = Literal["batch", "speed", "both"]


def combine(aggregate: str, left: Number | None, right: Number | None) -> Number | None:
    if left is None:
        return right
    if right is None:
        return left
    if aggregate in ("count", "sum"):
        return left + right
    return min(left, right) if aggregate == "min" else max(left, right)


def combine_metrics(aggregates: Mapping[str, str], left: Mapping[str, Number], right: Mapping[str, Number]) -> dict[str, Number]:
    merged = dict(left)
    for name, value in right.items():
        merged[name] = combine(aggregates[name], merged.get(name), value)
    return merged


def _source(left: Source | None, right: Source) -> Source:
    return right if left is None or left == right else "both"


@dataclass
class Cell:
    """One merged value: the metrics so far and where they came from."""

    metrics: dict[str, Number]
    source: Source


def merge_rows(
    aggregates: Mapping[str, str],
    batch: Iterable[tuple[object, Mapping[str, Number]]],
    speed: Iterable[tuple[object, Mapping[str, Number]]],
) -> dict[object, Cell]:
    """(group, metrics) rows of the batch version and of speed buckets after its cutoff -> one cell per group.
    A group is whatever the caller merges by: a window for a series, a key for `top`."""
    cells: dict[object, Cell] = {}
    for source, rows in (("batch", batch), ("speed", speed)):
        for group, metrics in rows:
            cell = cells.get(group)
            if cell is None:
                cells[group] = Cell(dict(metrics), source)
            else:
                cell.metrics = combine_metrics(aggregates, cell.metrics, metrics)
                cell.source = _source(cell.source, source)
    return cells


def roll_up(cells: Mapping[datetime, Cell], grain_seconds: int, aggregates: Mapping[str, str]) -> dict[datetime, Cell]:
    """Windows of the view's grain -> windows of a coarser grain (a whole multiple of it)."""
    rolled: dict[datetime, Cell] = {}
    for window, cell in cells.items():
        seconds = int(window.timestamp())
        start = datetime.fromtimestamp(seconds - seconds % grain_seconds, UTC)
        target = rolled.get(start)
        if target is None:
            rolled[start] = Cell(dict(cell.metrics), cell.source)
        else:
            target.metrics = combine_metrics(aggregates, target.metrics, cell.metrics)
            target.source = _source(target.source, cell.source)
    return rolled


def top(cells: Mapping[str, Cell], metric: str, n: int) -> list[tuple[str, Cell]]:
    """The n keys with the largest value of `metric` (ties by key, so the answer is stable)."""
    ranked = sorted(
        ((key, cell) for key, cell in cells.items() if cell.metrics.get(metric) is not None),
        key=lambda item: (-item[1].metrics[metric], item[0]),
    )
    return ranked[:n]
