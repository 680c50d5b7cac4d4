"""Cassandra writes and reads of the speed layer: speed-view rows, progress and per-batch metrics.

Every write is an upsert of values computed from the micro-batch alone, so replaying a batch rewrites the same values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args

from braid.cassandra import partition_batches

JOB = "speed"


class SpeedStore:
    def __init__(self, session) -> None:
        self._session = session
        self._insert_row = session.prepare(
            "INSERT INTO speed_views (view_name, handoff_bucket, shard, key, window_start, speed_batch, int_metrics, float_metrics)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        # The view path reports its own progress; how far the master dataset is complete is the archive's to say.
        self._progress = session.prepare("UPDATE pipeline_progress SET last_batch = ?, last_bucket = ?, updated_at = ? WHERE job = ?")
        self._complete = session.prepare("UPDATE pipeline_progress SET complete_through = ?, updated_at = ? WHERE job = ?")
        self._read_progress = session.prepare("SELECT last_batch, last_bucket, complete_through, updated_at FROM pipeline_progress WHERE job = ?")
        self._batch = session.prepare(
            "INSERT INTO speed_batches (job, batch_id, handoff_bucket, input_rows, valid_rows, quarantined_rows,"
            " quarantine_by_reason, view_rows, freshness_p50_ms, freshness_p95_ms, freshness_p99_ms, freshness_max_ms,"
            " committed_at, max_offsets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._batch_timing = session.prepare(
            "UPDATE speed_batches SET input_rows_per_second = ?, processed_rows_per_second = ?, duration_ms = ?,"
            " lag_by_partition = ? WHERE job = ? AND batch_id = ?"
        )
        self._index_bucket = session.prepare("INSERT INTO speed_view_buckets (view_name, handoff_bucket) VALUES (?, ?)")
        self._recent_batches = session.prepare("SELECT * FROM speed_batches WHERE job = ? LIMIT ?")

    def write_view_rows(self, rows: Iterable[tuple], concurrency: int = 16) -> int:
        """rows: (view_name, handoff_bucket, shard, key, window_start, speed_batch, int_metrics, float_metrics), written
        as one unlogged batch per partition (view, bucket, shard) and up to 100 rows: a tenth of the time of single
        inserts, which took a fifth of a loaded micro-batch."""
        rows = list(rows)
        batches = partition_batches(self._insert_row, rows, lambda row: row[:3])
        if batches:
            execute_concurrent(self._session, [(batch, ()) for batch in batches], concurrency=concurrency, raise_on_first_error=True)
        return len(rows)

    def index_buckets(self, pairs: Iterable[tuple[str, int]]) -> None:
        """(view, handoff bucket) pairs this batch writes rows for: the serving merge lists buckets from here."""
        pairs = list(pairs)
        if pairs:
            execute_concurrent_with_args(self._session, self._index_bucket, pairs, concurrency=64, raise_on_first_error=True)

    def progress(self) -> Any:
        return self._session.execute(self._read_progress, (JOB,)).one()

    def record_batch(self, batch_id: int, bucket: int, stats: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        self._session.execute(
            self._batch,
            (
                JOB, batch_id, bucket, stats["input_rows"], stats["valid_rows"], stats["quarantined_rows"],
                stats["quarantine_by_reason"], stats["view_rows"], stats["freshness_p50_ms"], stats["freshness_p95_ms"],
                stats["freshness_p99_ms"], stats["freshness_max_ms"], now, stats["max_offsets"],
            ),
        )  # fmt: skip
        self._session.execute(self._progress, (batch_id, bucket, now, JOB))

    def record_complete_through(self, bucket: int) -> None:
        self._session.execute(self._complete, (bucket, datetime.now(UTC), JOB))

    def record_timing(self, batch_id: int, progress: dict[str, Any], lag: dict[str, int]) -> None:
        self._session.execute(
            self._batch_timing,
            (
                float(progress.get("inputRowsPerSecond") or 0.0),
                float(progress.get("processedRowsPerSecond") or 0.0),
                int(progress.get("durationMs", {}).get("triggerExecution", 0)),
                lag,
                JOB,
                batch_id,
            ),
        )

    def recent_batches(self, limit: int = 20) -> list[Any]:
        return list(self._session.execute(self._recent_batches, (JOB, limit)))
