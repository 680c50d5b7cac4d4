"""The serving layer's queries: `series`, `top` and `views`, each answer merged by the contract and carrying its
freshness.

Reads happen in an order that makes every answer exact at the freshness point it reports:
1. the version pointer (version v, cutoff H);
2. the speed layer's progress (newest committed micro-batch k), read *after* the pointer: H was chosen from a
   progress recorded before the pointer moved, so every event with h <= H came in a micro-batch <= k;
3. the batch rows of v, and the speed rows of the buckets after H written by micro-batches <= k (a batch in flight
   is left out, so the speed part is a whole number of committed micro-batches).
The answer is then every distinct valid event of micro-batches <= k, aggregated: no gap at the boundary (the speed
rows start right after H), no double count (each event is in exactly one bucket). A publish during the query does not
change what it reads (v stays readable for the retire grace period), and retirement only deletes buckets <= the
cutoff of the oldest readable version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from braid.layout import shard_of, span_starts, view_key_text
from schemas.contracts import Rules
from schemas.views import View, grain_seconds
from serving import merge
from serving.store import ServingStore


class QueryError(ValueError):
    """A bad query: the message says which parameter, its value and what was expected (HTTP 400/404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Freshness:
    batch_version: int | None
    batch_cutoff: int | None  # the last handoff bucket the batch version covers
    batch_covers_until: datetime | None  # end of that bucket, in ingestion time
    batch_age_seconds: float | None
    speed_batch: int | None  # the newest speed micro-batch included
    speed_bucket: int | None
    speed_updated_at: datetime | None
    speed_age_seconds: float | None


@dataclass(frozen=True)
class Point:
    window_start: datetime
    metrics: dict[str, int | float]
    source: str  # batch | speed | both


@dataclass(frozen=True)
class SeriesAnswer:
    view: str
    key: list[str]
    grain: str
    start: datetime
    end: datetime
    points: list[Point]
    freshness: Freshness


@dataclass(frozen=True)
class TopEntry:
    key: list[str]
    value: int | float
    metrics: dict[str, int | float]
    source: str


@dataclass(frozen=True)
class TopAnswer:
    view: str
    metric: str
    start: datetime
    end: datetime
    n: int
    entries: list[TopEntry]
    freshness: Freshness


@dataclass
class Queries:
    store: ServingStore
    views: Mapping[str, View]
    rules: Rules
    max_windows: int = 10_080  # a week of minutes per query
    max_top: int = 1_000
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    # -- parameters ------------------------------------------------------------------------------------------------

    def view(self, name: str) -> View:
        view = self.views.get(name)
        if view is None:
            raise QueryError(f"view {name!r} is not declared; known views: {', '.join(sorted(self.views))}", status=404)
        return view

    def _range(self, view: View, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        start, end = _aware(start, "start"), _aware(end, "end")
        if end <= start:
            raise QueryError(f"end {end.isoformat()} must be after start {start.isoformat()}")
        seconds = view.grain_seconds
        first = int(start.timestamp()) // seconds * seconds
        windows = -(-(int(end.timestamp()) - first) // seconds)
        if windows > self.max_windows:
            raise QueryError(f"the range spans {windows} windows of {view.grain}; at most {self.max_windows} per query")
        return datetime.fromtimestamp(first, UTC), end

    def _key(self, view: View, key: list[str] | str) -> str:
        parts = [key] if isinstance(key, str) else list(key)
        if len(parts) != len(view.dimensions) or not all(isinstance(p, str) and p for p in parts):
            raise QueryError(f"key must give {len(view.dimensions)} value(s) for {', '.join(view.dimensions)}; got {parts!r}")
        # A value longer than its contract allows was never stored; beyond that, an event can hold nothing longer.
        bounds = view.dimension_max_lengths or (None,) * len(parts)
        for dimension, part, bound in zip(view.dimensions, parts, bounds):
            bound = bound or self.rules.max_event_bytes
            if len(part) > bound:
                raise QueryError(f"key {dimension} is {len(part)} characters long; {view.name} holds at most {bound}")
        return view_key_text(parts)

    # -- freshness -------------------------------------------------------------------------------------------------

    def _snapshot(self):
        pointer = self.store.pointer()  # first: see the module docstring
        progress = self.store.progress()
        now = self.clock()
        bucket = self.rules.handoff_bucket_seconds
        covers = datetime.fromtimestamp((pointer.cutoff + 1) * bucket, UTC) if pointer else None
        freshness = Freshness(
            batch_version=pointer.version if pointer else None,
            batch_cutoff=pointer.cutoff if pointer else None,
            batch_covers_until=covers,
            batch_age_seconds=round((now - covers).total_seconds(), 3) if covers else None,
            speed_batch=progress.last_batch if progress else None,
            speed_bucket=progress.last_bucket if progress else None,
            speed_updated_at=progress.updated_at if progress else None,
            speed_age_seconds=round((now - progress.updated_at).total_seconds(), 3) if progress and progress.updated_at else None,
        )
        return pointer, progress, freshness

    def _speed_buckets(self, view: View, pointer, progress) -> list[int]:
        if progress is None:
            return []
        after = pointer.cutoff if pointer else -1
        return self.store.speed_buckets(view.name, after, progress.last_bucket)

    # -- queries ---------------------------------------------------------------------------------------------------

    def series(self, view_name: str, key: list[str] | str, start: datetime, end: datetime, grain: str | None = None) -> SeriesAnswer:
        view = self.view(view_name)
        stored_key = self._key(view, key)
        start, end = self._range(view, start, end)
        grain = grain or view.grain
        try:
            query_seconds = grain_seconds(grain)
        except ValueError as error:
            raise QueryError(str(error)) from None
        if query_seconds % view.grain_seconds:
            raise QueryError(f"grain {grain} is not a whole multiple of view {view.name}'s grain {view.grain}")
        aggregates = {metric.name: metric.aggregate for metric in view.metrics}
        pointer, progress, freshness = self._snapshot()
        batch_rows = []
        if pointer is not None:
            spans = span_starts(start, end, view.grain_seconds, self.rules.span_windows)
            batch_rows = self.store.batch_series(view.name, stored_key, pointer.version, spans, start, end)
        speed_rows = []
        buckets = self._speed_buckets(view, pointer, progress)
        if buckets:
            shard = shard_of(stored_key, self.rules.view_shards)
            speed_rows = self.store.speed_series(view.name, stored_key, shard, buckets, start, end, progress.last_batch)
        cells = merge.merge_rows(aggregates, batch_rows, speed_rows)
        if query_seconds != view.grain_seconds:
            cells = merge.roll_up(cells, query_seconds, aggregates)
        points = [Point(window, cell.metrics, cell.source) for window, cell in sorted(cells.items())]
        parts = [key] if isinstance(key, str) else list(key)
        return SeriesAnswer(view.name, parts, grain, start, end, points, freshness)

    def top(self, view_name: str, start: datetime, end: datetime, n: int = 10, metric: str | None = None) -> TopAnswer:
        view = self.view(view_name)
        start, end = self._range(view, start, end)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= self.max_top:
            raise QueryError(f"n must be a whole number from 1 to {self.max_top}; got {n!r}")
        names = [m.name for m in view.metrics]
        metric = metric or names[0]
        if metric not in names:
            raise QueryError(f"metric {metric!r} is not one of view {view.name}'s metrics ({', '.join(names)})")
        aggregates = {m.name: m.aggregate for m in view.metrics}
        seconds = view.grain_seconds
        windows = [datetime.fromtimestamp(s, UTC) for s in range(int(start.timestamp()), int(end.timestamp()), seconds)]
        pointer, progress, freshness = self._snapshot()
        batch_rows = []
        if pointer is not None:
            batch_rows = [(key, metrics) for key, _, metrics in self.store.batch_windows(view.name, pointer.version, windows)]
        speed_rows = []
        buckets = self._speed_buckets(view, pointer, progress)
        if buckets:
            rows = self.store.speed_windows(view.name, self.rules.view_shards, buckets, start, end, progress.last_batch)
            speed_rows = [(key, metrics) for key, _, metrics in rows]
        cells = merge.merge_rows(aggregates, batch_rows, speed_rows)
        import json

        entries = [TopEntry(json.loads(key), cell.metrics[metric], cell.metrics, cell.source) for key, cell in merge.top(cells, metric, n)]
        return TopAnswer(view.name, metric, start, end, n, entries, freshness)

    def describe_views(self) -> list[dict[str, Any]]:
        return [
            {
                "name": view.name,
                "description": view.description,
                "sources": list(view.sources),
                "dimensions": list(view.dimensions),
                "grain": view.grain,
                "metrics": {m.name: {"aggregate": m.aggregate, "field": m.field} for m in view.metrics},
            }
            for view in self.views.values()
        ]


def _aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise QueryError(f"{name} must be a date-time, got {moment!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def since(seconds: float, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[datetime, datetime]:
    now = clock()
    return now - timedelta(seconds=seconds), now
