"""Cassandra reads of the serving layer: the version pointer, speed progress, batch rows and speed rows.

Prepared statements only, at the read consistency of the settings; a read that times out is retried (reads are
idempotent). Many small slices run concurrently: one per span of a key's batch windows, one per speed bucket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cassandra import ConsistencyLevel, OperationTimedOut, ReadTimeout
from cassandra.concurrent import execute_concurrent

from braid.cassandra import Pointer, as_utc

PIPELINE = "views"
_RETRIES = 2
# Every table a statement below reads: the reader role of a password-protected Cassandra may SELECT these and nothing
# else (braid.cassandra_roles.grant_reads; a test checks the list against the statements).
READ_TABLES = (
    "batch_pointer", "batch_versions", "batch_view_windows", "batch_views",
    "pipeline_progress", "speed_batches", "speed_view_buckets", "speed_views",
)  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """Where the speed layer is: its newest committed micro-batch and handoff bucket."""

    last_batch: int
    last_bucket: int
    complete_through: int
    updated_at: datetime


def _metrics(row: Any) -> dict[str, int | float]:
    return {**{k: v for k, v in (row.int_metrics or {}).items() if v is not None}, **{k: v for k, v in (row.float_metrics or {}).items() if v is not None}}


class ServingStore:
    def __init__(self, session, read_consistency: str = "LOCAL_QUORUM", concurrency: int = 64) -> None:
        self._session = session
        self._concurrency = concurrency
        level = ConsistencyLevel.name_to_value[read_consistency]

        def prepare(query: str):
            statement = session.prepare(query)
            statement.consistency_level = level
            statement.is_idempotent = True
            return statement

        self._pointer = prepare("SELECT version, cutoff, published_at FROM batch_pointer WHERE pipeline = ?")
        self._progress = prepare("SELECT last_batch, last_bucket, complete_through, updated_at FROM pipeline_progress WHERE job = ?")
        self._batch_series = prepare(
            "SELECT window_start, int_metrics, float_metrics FROM batch_views WHERE view_name = ? AND key = ? AND span_start = ?"
            " AND version = ? AND window_start >= ? AND window_start < ?"
        )
        self._batch_window = prepare(
            "SELECT key, int_metrics, float_metrics FROM batch_view_windows WHERE view_name = ? AND window_start = ? AND version = ?"
        )
        self._buckets = prepare(
            "SELECT handoff_bucket FROM speed_view_buckets WHERE view_name = ? AND handoff_bucket > ? AND handoff_bucket <= ?"
        )
        self._speed_key = prepare(
            "SELECT window_start, speed_batch, int_metrics, float_metrics FROM speed_views WHERE view_name = ? AND handoff_bucket = ?"
            " AND shard = ? AND key = ? AND window_start >= ? AND window_start < ?"
        )
        # One whole partition (a bucket's shard), filtered by Cassandra: rows are clustered by key first, so the window
        # and batch bounds cannot be slices, but filtering inside a single partition costs the node one read of it
        # and spares the client decoding every row of every bucket since the cutoff (72,000 rows for 700 kept in a
        # ten-minute `top` of the soak: 1.3 s of the API's CPU per query, 0.23 s filtered).
        self._speed_shard = prepare(
            "SELECT key, window_start, int_metrics, float_metrics FROM speed_views WHERE view_name = ? AND handoff_bucket = ?"
            " AND shard = ? AND window_start >= ? AND window_start < ? AND speed_batch <= ? ALLOW FILTERING"
        )
        self._batches = prepare("SELECT * FROM speed_batches WHERE job = ? LIMIT ?")
        self._latest_version = prepare("SELECT version, state, quality FROM batch_versions WHERE pipeline = ? LIMIT 1")

    def _one(self, statement, parameters: tuple) -> Any:
        for attempt in range(_RETRIES + 1):
            try:
                return self._session.execute(statement, parameters).one()
            except (ReadTimeout, OperationTimedOut):
                if attempt == _RETRIES:
                    raise
        return None

    def _many(self, statement, parameter_sets: Iterable[tuple]) -> list[list[Any]]:
        """Every slice, concurrently; a slice that times out is read again."""
        parameter_sets = list(parameter_sets)
        results: list[list[Any] | None] = [None] * len(parameter_sets)
        pending = list(range(len(parameter_sets)))
        for attempt in range(_RETRIES + 1):
            outcomes = execute_concurrent(
                self._session, [(statement, parameter_sets[i]) for i in pending], concurrency=self._concurrency, raise_on_first_error=False
            )
            failed = []
            for index, (success, outcome) in zip(pending, outcomes):
                if success:
                    results[index] = list(outcome)
                elif isinstance(outcome, (ReadTimeout, OperationTimedOut)) and attempt < _RETRIES:
                    failed.append(index)
                else:
                    raise outcome
            if not failed:
                break
            pending = failed
        return [rows or [] for rows in results]

    def pointer(self) -> Pointer | None:
        row = self._one(self._pointer, (PIPELINE,))
        return Pointer(row.version, row.cutoff, as_utc(row.published_at)) if row else None

    def progress(self) -> Progress | None:
        row = self._one(self._progress, ("speed",))
        if row is None or row.last_batch is None:
            return None
        return Progress(row.last_batch, row.last_bucket, row.complete_through, as_utc(row.updated_at))

    def batch_series(self, view: str, key: str, version: int, spans: list[datetime], start: datetime, end: datetime) -> list[tuple[datetime, dict]]:
        rows = self._many(self._batch_series, [(view, key, span, version, start, end) for span in spans])
        return [(as_utc(row.window_start), _metrics(row)) for slice_ in rows for row in slice_]

    def batch_windows(self, view: str, version: int, windows: list[datetime]) -> list[tuple[str, datetime, dict]]:
        rows = self._many(self._batch_window, [(view, window, version) for window in windows])
        return [(row.key, window, _metrics(row)) for window, slice_ in zip(windows, rows) for row in slice_]

    def speed_buckets(self, view: str, after: int, through: int) -> list[int]:
        return [row.handoff_bucket for row in self._session.execute(self._buckets, (view, after, through))]

    def speed_series(self, view: str, key: str, shard: int, buckets: list[int], start: datetime, end: datetime, through_batch: int) -> list[tuple[datetime, dict]]:
        rows = self._many(self._speed_key, [(view, bucket, shard, key, start, end) for bucket in buckets])
        return [(as_utc(row.window_start), _metrics(row)) for slice_ in rows for row in slice_ if row.speed_batch <= through_batch]

    def speed_windows(self, view: str, shards: int, buckets: list[int], start: datetime, end: datetime, through_batch: int) -> list[tuple[str, datetime, dict]]:
        parameters = [(view, bucket, shard, start, end, through_batch) for bucket in buckets for shard in range(shards)]
        return [(row.key, as_utc(row.window_start), _metrics(row)) for slice_ in self._many(self._speed_shard, parameters) for row in slice_]

    def latest_batch_version(self) -> Any:
        return self._one(self._latest_version, (PIPELINE,))

    def recent_speed_batches(self, limit: int = 20) -> list[Any]:
        return list(self._session.execute(self._batches, ("speed", limit)))
