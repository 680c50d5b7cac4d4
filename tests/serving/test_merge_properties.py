"""The merge contract as properties (hypothesis), against plain-Python aggregations of the events.

1. `merge_rows` and `roll_up`: however events are split into a batch part and speed parts, the merged cells equal the
   aggregation of all of them, at the view's grain and rolled up to a coarser one, with the right provenance.
2. The serving queries (`serving.queries.Queries`, which merge with serving.merge) over an in-memory store that the
   state machine below writes as the speed and batch layers do: micro-batches of events in handoff buckets, batch
   versions published at random cutoffs H, speed buckets <= H retired, and queries in between, with a publish, a
   micro-batch or a retirement landing *inside* a query, between its reads. Every answer must equal the distinct
   events of the micro-batches up to the freshness point it reports, aggregated: no gap, no double count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from braid.cassandra import Pointer
from braid.layout import shard_of, span_start
from schemas.contracts import rules
from schemas.views import Metric, View
from serving.merge import Cell, merge_rows, roll_up
from serving.queries import Queries
from serving.store import Progress
from tests.speed.oracle import jackson_array

RULES = rules()
VIEW = View(
    name="amounts",
    description="",
    sources=("payment",),
    filter=(),
    dimensions=("merchant_id",),
    grain="1m",
    metrics=(Metric("n", "count", None), Metric("total", "sum", "amount"), Metric("low", "min", "amount"), Metric("high", "max", "amount")),
)
AGGREGATES = {metric.name: metric.aggregate for metric in VIEW.metrics}
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MERCHANTS = ("m-1", "x'; DROP TABLE speed_views; --", "Zürich ü")
MINUTES = 8


@dataclass(frozen=True)
class Event:
    event_id: str
    merchant: str
    minute: int  # event time: T0 + minute (late and out-of-order events are just small minutes in later buckets)
    amount: int

    @property
    def window(self) -> datetime:
        return T0 + timedelta(minutes=self.minute)


events = st.builds(Event, st.integers(0, 15).map(lambda n: f"e-{n}"), st.sampled_from(MERCHANTS), st.integers(0, MINUTES - 1), st.integers(1, 1000))
bucket_steps = st.sampled_from([0, 1, 1, 2])  # several micro-batches may share a handoff bucket


def stored_key(merchant: str) -> str:
    return jackson_array([merchant])  # as Spark's to_json writes it


def floor(moment: datetime, seconds: int) -> datetime:
    stamp = int(moment.timestamp())
    return datetime.fromtimestamp(stamp - stamp % seconds, UTC)


def aggregate(events: Iterable[Event], group: Callable[[Event], object]) -> dict[object, dict[str, int]]:
    """The oracle: count, sum, min and max of the amounts per group, by hand."""
    result: dict[object, dict[str, int]] = {}
    for event in events:
        cell = result.setdefault(group(event), {"n": 0, "total": 0, "low": event.amount, "high": event.amount})
        cell["n"] += 1
        cell["total"] += event.amount
        cell["low"] = min(cell["low"], event.amount)
        cell["high"] = max(cell["high"], event.amount)
    return result


def first_copies(events: Iterable[Event]) -> list[Event]:
    seen: set[str] = set()
    first = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            first.append(event)
    return first


# -- 1. the merge functions ------------------------------------------------------------------------------------------


@given(st.lists(st.tuples(events, st.integers(0, 3)), max_size=40), st.sampled_from([60, 300, 3600]))
def test_merged_cells_equal_the_aggregation_of_all_parts(placed: list[tuple[Event, int]], coarse: int) -> None:
    """Part 0 is the batch version, parts 1-3 speed buckets; each part's rows are aggregated per window first."""
    parts = {part: aggregate([e for e, p in placed if p == part], lambda e: e.window) for part in range(4)}
    batch = list(parts[0].items())
    speed = [row for part in (1, 2, 3) for row in parts[part].items()]
    cells = merge_rows(AGGREGATES, batch, speed)

    def provenance(group: Callable[[Event], object]) -> dict[object, str]:
        sources: dict[object, set[str]] = {}
        for event, part in placed:
            sources.setdefault(group(event), set()).add("batch" if part == 0 else "speed")
        return {key: "both" if len(found) == 2 else found.pop() for key, found in sources.items()}

    everything = [event for event, _ in placed]
    by_window = provenance(lambda e: e.window)
    assert cells == {window: Cell(metrics, by_window[window]) for window, metrics in aggregate(everything, lambda e: e.window).items()}
    by_coarse = provenance(lambda e: floor(e.window, coarse))
    expected = aggregate(everything, lambda e: floor(e.window, coarse))
    assert roll_up(cells, coarse, AGGREGATES) == {window: Cell(metrics, by_coarse[window]) for window, metrics in expected.items()}


# -- 2. the queries over a store written as the layers write it ------------------------------------------------------------


@dataclass(frozen=True)
class SpeedRow:
    bucket: int
    shard: int
    key: str
    window: datetime
    speed_batch: int
    metrics: dict[str, int]


class MemoryStore:
    """The ServingStore's reads over in-memory tables, with a hook that runs once after a named read: how a write
    of another layer lands between two reads of one query."""

    def __init__(self) -> None:
        self.pointer_row: Pointer | None = None
        self.progress_row: Progress | None = None
        self.batch_rows: dict[int, dict[tuple[str, datetime], dict[str, int]]] = {}  # version -> (key, window) -> metrics
        self.speed_rows: list[SpeedRow] = []
        self.bucket_index: set[int] = set()
        self.hooks: dict[str, Callable[[], None]] = {}
        self.read_cutoff: int | None = None  # the cutoff of the version the query in flight reads (kept readable)

    def _after(self, read: str) -> None:
        hook = self.hooks.pop(read, None)
        if hook is not None:
            hook()

    def pointer(self) -> Pointer | None:
        row = self.pointer_row
        self.read_cutoff = row.cutoff if row else -1
        self._after("pointer")
        return row

    def progress(self) -> Progress | None:
        row = self.progress_row
        self._after("progress")
        return row

    def batch_series(self, view: str, key: str, version: int, spans: list[datetime], start: datetime, end: datetime):
        rows = [
            (window, dict(metrics))
            for (row_key, window), metrics in self.batch_rows[version].items()
            if row_key == key and start <= window < end and span_start(window, VIEW.grain_seconds, RULES.span_windows) in spans
        ]
        self._after("batch")
        return rows

    def batch_windows(self, view: str, version: int, windows: list[datetime]):
        rows = [(key, window, dict(metrics)) for (key, window), metrics in self.batch_rows[version].items() if window in windows]
        self._after("batch")
        return rows

    def speed_buckets(self, view: str, after: int, through: int) -> list[int]:
        buckets = sorted(bucket for bucket in self.bucket_index if after < bucket <= through)
        self._after("buckets")
        return buckets

    def speed_series(self, view: str, key: str, shard: int, buckets: list[int], start: datetime, end: datetime, through_batch: int):
        return [
            (row.window, dict(row.metrics))
            for row in self.speed_rows
            if row.bucket in buckets and row.shard == shard and row.key == key and start <= row.window < end and row.speed_batch <= through_batch
        ]

    def speed_windows(self, view: str, shards: int, buckets: list[int], start: datetime, end: datetime, through_batch: int):
        return [
            (row.key, row.window, dict(row.metrics))
            for row in self.speed_rows
            if row.bucket in buckets and row.shard < shards and start <= row.window < end and row.speed_batch <= through_batch
        ]


class MergeContract(RuleBasedStateMachine):
    """The speed layer writes micro-batches (rows, then progress), the batch layer publishes versions and retires
    speed buckets, and queries run, some with another layer's write landing between their reads."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.queries = Queries(self.store, {VIEW.name: VIEW}, RULES, clock=lambda: T0 + timedelta(hours=1))
        self.batches: list[tuple[int, list[Event]]] = []  # micro-batch id -> (handoff bucket, events as ingested)
        self.committed = -1  # the newest micro-batch whose progress is recorded
        self.complete_through = -1
        self.version = 0

    # -- the speed layer -----------------------------------------------------------------------------------------------

    @rule(chunk=st.lists(events, min_size=1, max_size=6), step=bucket_steps)
    def speed_writes_a_micro_batch(self, chunk: list[Event], step: int) -> None:
        if len(self.batches) > self.committed + 1:
            self.speed_commits()  # one micro-batch at a time, as the streaming query runs them
        bucket = (self.batches[-1][0] if self.batches else 0) + step  # ingestion order: buckets never go back
        batch_id = len(self.batches)
        earlier = {event.event_id for _, chunk_before in self.batches for event in chunk_before}
        unique = [event for event in first_copies(chunk) if event.event_id not in earlier]  # counted once, first copy
        self.batches.append((bucket, chunk))
        self.store.bucket_index.add(bucket)  # indexed before the rows, as the writer does
        for (merchant, window), metrics in aggregate(unique, lambda e: (e.merchant, e.window)).items():
            key = stored_key(merchant)
            self.store.speed_rows.append(SpeedRow(bucket, shard_of(key, RULES.view_shards), key, window, batch_id, metrics))

    @precondition(lambda self: len(self.batches) > self.committed + 1)
    @rule()
    def speed_commits(self) -> None:
        self.committed += 1
        bucket = self.batches[self.committed][0]
        self.complete_through = max(self.complete_through, bucket - 1)  # later micro-batches can only add to >= bucket
        self.store.progress_row = Progress(self.committed, bucket, self.complete_through, T0)

    # -- the batch layer -----------------------------------------------------------------------------------------------

    @rule(data=st.data())
    def batch_publishes(self, data: st.DataObject) -> None:
        low = self.store.pointer_row.cutoff if self.store.pointer_row else -1
        if self.complete_through >= low:
            self._publish(data.draw(st.integers(low, self.complete_through), label="cutoff"))

    def _publish(self, cutoff: int) -> None:
        """A batch version of every event in buckets <= cutoff, first copies only, then the pointer moves to it."""
        ingested = [event for bucket, chunk in self.batches if bucket <= cutoff for event in chunk]
        self.version += 1
        self.store.batch_rows[self.version] = {
            (stored_key(merchant), window): metrics
            for (merchant, window), metrics in aggregate(first_copies(ingested), lambda e: (e.merchant, e.window)).items()
        }
        self.store.pointer_row = Pointer(self.version, cutoff, T0)

    @rule()
    def batch_retires_speed_buckets(self) -> None:
        if self.store.pointer_row is None:
            return
        cutoffs = [self.store.pointer_row.cutoff] + ([self.store.read_cutoff] if self.store.read_cutoff is not None else [])
        through = min(cutoffs)  # never past the cutoff of a version still being read
        self.store.speed_rows = [row for row in self.store.speed_rows if row.bucket > through]
        self.store.bucket_index = {bucket for bucket in self.store.bucket_index if bucket > through}

    # -- queries -------------------------------------------------------------------------------------------------------

    def _interrupt(self, data: st.DataObject) -> None:
        """Up to three writes of the other layers (a micro-batch written commits the one before it), landing after one
        of the query's reads; "catch-up" is a long pause between two reads."""
        read = data.draw(st.sampled_from(["none", "pointer", "progress", "batch", "buckets"]), label="landing after")
        if read == "none":
            return
        kinds = ["micro-batch", "commit", "publish", "retire", "publish-and-retire", "catch-up"]
        writes = data.draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3), label="writes")

        def land() -> None:
            for write in writes:
                if write in ("publish", "publish-and-retire"):
                    self.batch_publishes(data)
                if write in ("retire", "publish-and-retire"):
                    self.batch_retires_speed_buckets()
                elif write == "commit" and len(self.batches) > self.committed + 1:
                    self.speed_commits()
                elif write == "micro-batch":
                    chunk = data.draw(st.lists(events, min_size=1, max_size=4), label="chunk")
                    self.speed_writes_a_micro_batch(chunk, data.draw(bucket_steps, label="step"))
                elif write == "catch-up":  # a long pause: two micro-batches committed, then a version of all it may cover
                    for _ in range(2):
                        self.speed_writes_a_micro_batch(data.draw(st.lists(events, min_size=1, max_size=4), label="chunk"), 1)
                        self.speed_commits()
                    self._publish(self.complete_through)

        self.store.hooks[read] = land

    def _expected(self, freshness) -> tuple[list[Event], int]:
        through_batch = freshness.speed_batch if freshness.speed_batch is not None else -1
        cutoff = freshness.batch_cutoff if freshness.batch_cutoff is not None else -1
        placed = [(event, bucket) for bucket, chunk in self.batches[: through_batch + 1] for event in chunk]
        seen: set[str] = set()
        distinct = []
        for event, bucket in placed:
            if event.event_id not in seen:
                seen.add(event.event_id)
                distinct.append((event, bucket))
        return distinct, cutoff

    @staticmethod
    def _provenance(distinct: list[tuple[Event, int]], cutoff: int, group: Callable[[Event], object]) -> dict[object, str]:
        sources: dict[object, set[str]] = {}
        for event, bucket in distinct:
            sources.setdefault(group(event), set()).add("batch" if bucket <= cutoff else "speed")
        return {key: "both" if len(found) == 2 else found.pop() for key, found in sources.items()}

    @rule(data=st.data(), merchant=st.sampled_from(MERCHANTS), grain=st.sampled_from(["1m", "5m", "1h"]))
    def query_a_series(self, data: st.DataObject, merchant: str, grain: str) -> None:
        first = data.draw(st.integers(0, MINUTES - 1), label="first minute")
        last = data.draw(st.integers(first + 1, MINUTES), label="end minute")
        start, end = T0 + timedelta(minutes=first), T0 + timedelta(minutes=last)
        self._interrupt(data)
        answer = self.queries.series(VIEW.name, merchant, start, end, grain=grain)
        self.store.hooks.clear()
        self.store.read_cutoff = None
        distinct, cutoff = self._expected(answer.freshness)
        seconds = {"1m": 60, "5m": 300, "1h": 3600}[grain]
        mine = [(event, bucket) for event, bucket in distinct if event.merchant == merchant and start <= event.window < end]
        expected = aggregate((event for event, _ in mine), lambda e: floor(e.window, seconds))
        sources = self._provenance(mine, cutoff, lambda e: floor(e.window, seconds))
        assert {p.window_start: (p.metrics, p.source) for p in answer.points} == {w: (m, sources[w]) for w, m in expected.items()}

    @rule(data=st.data())
    def query_the_top(self, data: st.DataObject) -> None:
        first = data.draw(st.integers(0, MINUTES - 1), label="first minute")
        last = data.draw(st.integers(first + 1, MINUTES), label="end minute")
        start, end = T0 + timedelta(minutes=first), T0 + timedelta(minutes=last)
        self._interrupt(data)
        answer = self.queries.top(VIEW.name, start, end, n=len(MERCHANTS), metric="total")
        self.store.hooks.clear()
        self.store.read_cutoff = None
        distinct, cutoff = self._expected(answer.freshness)
        mine = [(event, bucket) for event, bucket in distinct if start <= event.window < end]
        expected = aggregate((event for event, _ in mine), lambda e: e.merchant)
        sources = self._provenance(mine, cutoff, lambda e: e.merchant)
        assert {entry.key[0]: (entry.metrics, entry.source) for entry in answer.entries} == {m: (v, sources[m]) for m, v in expected.items()}
        assert [entry.value for entry in answer.entries] == sorted((v["total"] for v in expected.values()), reverse=True)


TestMergeContract = MergeContract.TestCase
# More runs than the profile's default: the interleavings that break a wrong read order are a few steps deep.
TestMergeContract.settings = settings(settings.default, max_examples=max(100, settings.default.max_examples))
