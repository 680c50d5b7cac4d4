"""Cassandra reads and writes of the batch layer: version records, the version pointer, view rows, retirement.

Visibility rules (DESIGN.md, merge contract rules 2, 3 and 5):
- a version's rows are written next to the served version's, under their own version number, and readers only ever
  slice `version = <the pointer's>`; the pointer moves in one lightweight transaction after every row is written;
- the pointer never moves to a lower cutoff, so speed rows a published cutoff covers are never needed again once
  every reader has moved past the version before it;
- a superseded version and the speed buckets only it needed are deleted after a grace period, so a query that read
  the pointer before a switch still finds everything it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType

from braid.cassandra import ROWS_PER_BATCH, Pointer, as_utc

PIPELINE = "views"
RETIRE_JOB = "retire"  # pipeline_progress row: the newest handoff bucket whose speed rows are deleted

# A version's life: computing -> validated -> publishing -> published -> superseded -> retired (its rows deleted).
# FAILED marks a version a concurrent attempt of the same run replaced; it is never served.
COMPUTING, VALIDATED, PUBLISHING, PUBLISHED, SUPERSEDED, RETIRED, FAILED = (
    "computing", "validated", "publishing", "published", "superseded", "retired", "failed",
)  # fmt: skip


@dataclass(frozen=True)
class CassandraTarget:
    """What a Spark task needs to open its own connection: plain values, so it pickles to executors."""

    contact_points: list[str]
    port: int
    keyspace: str
    local_datacenter: str
    username: str | None
    password: str | None = field(repr=False)
    write_consistency: str
    concurrency: int

    def connect(self):
        from braid.cassandra import open_cluster

        cluster = open_cluster(
            self.contact_points, self.port, local_datacenter=self.local_datacenter, username=self.username, password=self.password
        )
        return cluster, cluster.connect(self.keyspace)


@dataclass(frozen=True)
class VersionRecord:
    version: int
    cutoff: int
    previous_version: int | None
    run_id: str
    mode: str
    state: str
    snapshot: dict[str, int]
    view_tables: dict[str, int]
    view_rows: dict[str, int]
    quality: str | None
    events: int | None
    published_at: datetime | None
    superseded_at: datetime | None


class BatchStore:
    def __init__(self, session, *, write_consistency: str = "LOCAL_QUORUM", read_consistency: str = "LOCAL_QUORUM") -> None:
        self._session = session
        write = ConsistencyLevel.name_to_value[write_consistency]
        read = ConsistencyLevel.name_to_value[read_consistency]

        def prepare(query: str, level: int):
            statement = session.prepare(query)
            statement.consistency_level = level
            return statement

        self._claim = prepare(
            "INSERT INTO batch_versions (pipeline, version, cutoff, previous_version, run_id, mode, state, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
            write,
        )
        self._claim_run = prepare("INSERT INTO batch_runs (run_id, version) VALUES (?, ?) IF NOT EXISTS", write)
        self._run = prepare("SELECT version FROM batch_runs WHERE run_id = ?", ConsistencyLevel.SERIAL)
        self._newest = prepare("SELECT version FROM batch_versions WHERE pipeline = ? LIMIT 1", ConsistencyLevel.SERIAL)
        self._version = prepare("SELECT * FROM batch_versions WHERE pipeline = ? AND version = ?", ConsistencyLevel.SERIAL)
        self._versions = prepare("SELECT * FROM batch_versions WHERE pipeline = ? LIMIT ?", ConsistencyLevel.SERIAL)
        self._set_state = prepare("UPDATE batch_versions SET state = ? WHERE pipeline = ? AND version = ? IF EXISTS", write)
        self._set_quality = prepare("UPDATE batch_versions SET quality = ? WHERE pipeline = ? AND version = ? IF EXISTS", write)
        self._set_snapshot = prepare(
            "UPDATE batch_versions SET snapshot = ? WHERE pipeline = ? AND version = ? IF EXISTS", write
        )
        self._set_tables = prepare(
            "UPDATE batch_versions SET view_tables = ?, view_rows = ?, events = ? WHERE pipeline = ? AND version = ? IF EXISTS", write
        )
        self._set_published = prepare(
            "UPDATE batch_versions SET state = ?, published_at = ? WHERE pipeline = ? AND version = ? IF EXISTS", write
        )
        self._set_superseded = prepare(
            "UPDATE batch_versions SET state = ?, superseded_at = ? WHERE pipeline = ? AND version = ? IF state = ?", write
        )
        self._pointer = prepare("SELECT version, cutoff, published_at FROM batch_pointer WHERE pipeline = ?", ConsistencyLevel.SERIAL)
        self._first_pointer = prepare(
            "INSERT INTO batch_pointer (pipeline, version, cutoff, published_at) VALUES (?, ?, ?, ?) IF NOT EXISTS", write
        )
        self._move_pointer = prepare(
            "UPDATE batch_pointer SET version = ?, cutoff = ?, published_at = ? WHERE pipeline = ? IF version = ?", write
        )
        self._progress = prepare("SELECT complete_through FROM pipeline_progress WHERE job = ?", read)
        self._set_retired = prepare("UPDATE pipeline_progress SET complete_through = ?, updated_at = ? WHERE job = ?", write)
        self._retire_bucket = prepare("DELETE FROM speed_views WHERE view_name = ? AND handoff_bucket = ? AND shard = ?", write)
        self._buckets = prepare("SELECT handoff_bucket FROM speed_view_buckets WHERE view_name = ? AND handoff_bucket <= ?", read)
        self._retire_index = prepare("DELETE FROM speed_view_buckets WHERE view_name = ? AND handoff_bucket <= ?", write)

    # -- versions ---------------------------------------------------------------------------------------------------

    def version_of_run(self, run_id: str) -> VersionRecord | None:
        row = self._session.execute(self._run, (run_id,)).one()
        return self.version(row.version) if row else None

    def claim_version(self, run_id: str, cutoff: int, mode: str, previous_version: int | None) -> VersionRecord:
        """A new version number for this run, or the one an earlier attempt of the same run claimed."""
        existing = self.version_of_run(run_id)
        if existing is not None:
            return existing
        while True:
            newest = self._session.execute(self._newest, (PIPELINE,)).one()
            candidate = (newest.version if newest else 0) + 1
            now = datetime.now(UTC)
            claimed = self._session.execute(self._claim, (PIPELINE, candidate, cutoff, previous_version, run_id, mode, COMPUTING, now))
            if not claimed.was_applied:
                continue  # another run took this number between the read and the insert: take the next one
            if self._session.execute(self._claim_run, (run_id, candidate)).was_applied:
                return self.version(candidate)
            self.set_state(candidate, FAILED)  # a concurrent attempt of the same run won: continue its version
            return self.version_of_run(run_id)

    def version(self, version: int) -> VersionRecord | None:
        row = self._session.execute(self._version, (PIPELINE, version)).one()
        return _record(row) if row else None

    def versions(self, limit: int = 20) -> list[VersionRecord]:
        return [_record(row) for row in self._session.execute(self._versions, (PIPELINE, limit))]

    def set_state(self, version: int, state: str) -> None:
        self._session.execute(self._set_state, (state, PIPELINE, version))

    def record_snapshot(self, version: int, snapshot: dict[str, int]) -> None:
        self._session.execute(self._set_snapshot, (snapshot, PIPELINE, version))

    def record_view_tables(self, version: int, tables: dict[str, int], rows: dict[str, int], events: int | None) -> None:
        self._session.execute(self._set_tables, (tables, rows, events, PIPELINE, version))

    def record_quality(self, version: int, quality: str) -> None:
        self._session.execute(self._set_quality, (quality, PIPELINE, version))

    # -- the pointer ------------------------------------------------------------------------------------------------

    def pointer(self) -> Pointer | None:
        row = self._session.execute(self._pointer, (PIPELINE,)).one()
        return Pointer(row.version, row.cutoff, as_utc(row.published_at)) if row else None

    def switch_pointer(self, record: VersionRecord) -> bool:
        """Serve `record` from now on; False when it is already served. Refuses a lower cutoff than the served one:
        the speed rows between the two may already be retired, and answers would have a gap."""
        now = datetime.now(UTC)
        while True:
            current = self.pointer()
            if current is None:
                if self._session.execute(self._first_pointer, (PIPELINE, record.version, record.cutoff, now)).was_applied:
                    break
                continue
            if current.version == record.version:
                return False
            if record.cutoff < current.cutoff or record.version < current.version:
                raise RuntimeError(
                    f"batch version {record.version} (cutoff {record.cutoff}) is older than the served version "
                    f"{current.version} (cutoff {current.cutoff}); it will not be published"
                )
            moved = self._session.execute(self._move_pointer, (record.version, record.cutoff, now, PIPELINE, current.version))
            if moved.was_applied:
                self._session.execute(self._set_superseded, (SUPERSEDED, now, PIPELINE, current.version, PUBLISHED))
                break
        self._session.execute(self._set_published, (PUBLISHED, now, PIPELINE, record.version))
        return True

    # -- retirement -------------------------------------------------------------------------------------------------

    def oldest_readable(self, grace: timedelta, now: datetime | None = None) -> VersionRecord | None:
        """The oldest version a query may still be reading: the served one, or one superseded less than `grace` ago."""
        now = now or datetime.now(UTC)
        readable = [
            record
            for record in self.versions(limit=100)
            if record.state == PUBLISHED or (record.state == SUPERSEDED and record.superseded_at and now - record.superseded_at < grace)
        ]
        return min(readable, key=lambda record: record.version) if readable else None

    def speed_retired_through(self) -> int | None:
        row = self._session.execute(self._progress, (RETIRE_JOB,)).one()
        return row.complete_through if row else None

    def retire_speed_buckets(self, view_names: Iterable[str], through: int, shards: int) -> int:
        """Delete the speed rows of every bucket up to `through`: one partition tombstone per view, bucket and shard,
        found in the bucket index, then the index entries themselves (the rows first: the index is how they are found)."""
        deleted = 0
        for view in view_names:
            buckets = [row.handoff_bucket for row in self._session.execute(self._buckets, (view, through))]
            keys = [(view, bucket, shard) for bucket in buckets for shard in range(shards)]
            if keys:
                execute_concurrent_with_args(self._session, self._retire_bucket, keys, concurrency=64, raise_on_first_error=True)
            self._session.execute(self._retire_index, (view, through))
            deleted += len(keys)
        self._session.execute(self._set_retired, (through, datetime.now(UTC), RETIRE_JOB))
        return deleted

    def speed_complete_through(self) -> int | None:
        row = self._session.execute(self._progress, ("speed",)).one()
        return row.complete_through if row else None


def _record(row: Any) -> VersionRecord:
    return VersionRecord(
        version=row.version,
        cutoff=row.cutoff,
        previous_version=row.previous_version,
        run_id=row.run_id,
        mode=row.mode,
        state=row.state,
        snapshot=dict(row.snapshot or {}),
        view_tables=dict(row.view_tables or {}),
        view_rows=dict(row.view_rows or {}),
        quality=row.quality,
        events=row.events,
        published_at=as_utc(row.published_at),
        superseded_at=as_utc(row.superseded_at),
    )


_TABLES = {
    # table -> (insert, delete of the versions below a bound in one partition, the partition's columns in a row)
    "batch_views": (
        "INSERT INTO batch_views (view_name, key, span_start, version, window_start, int_metrics, float_metrics) VALUES (?, ?, ?, ?, ?, ?, ?)",
        "DELETE FROM batch_views WHERE view_name = ? AND key = ? AND span_start = ? AND version < ?",
        ("view_name", "key", "span_ms"),
    ),
    "batch_view_windows": (
        "INSERT INTO batch_view_windows (view_name, window_start, version, key, int_metrics, float_metrics) VALUES (?, ?, ?, ?, ?, ?)",
        "DELETE FROM batch_view_windows WHERE view_name = ? AND window_start = ? AND version < ?",
        ("view_name", "window_ms"),
    ),
}


def partition_columns(table: str) -> tuple[str, ...]:
    return _TABLES[table][2]


def publish_partition(rows: Iterator[Any], target: CassandraTarget, table: str, version: int, retire_below: int | None) -> Iterator[int]:
    """Runs in a Spark task: write this task's rows of `version` to `table`, grouped by Cassandra partition (the rows
    arrive sorted by it), and delete in each partition it touches the versions below `retire_below` (no reader can
    need them). Rewriting is harmless: a rerun writes the same values under the same version. Yields the row count."""
    insert_cql, delete_cql, columns = _TABLES[table]
    cluster, session = target.connect()
    try:
        level = ConsistencyLevel.name_to_value[target.write_consistency]
        insert, delete = session.prepare(insert_cql), session.prepare(delete_cql)
        written = 0
        statements: list = []

        def flush() -> None:
            if statements:
                execute_concurrent(session, statements, concurrency=target.concurrency, raise_on_first_error=True)
                statements.clear()

        def when(ms: int) -> datetime:
            return datetime.fromtimestamp(ms / 1000, UTC)

        for _, partition in groupby(rows, key=lambda row: tuple(row[c] for c in columns)):
            batch = None
            for row in partition:
                ints = {name: int(value) for name, value in (row.int_metrics or {}).items() if value is not None}
                floats = {name: float(value) for name, value in (row.float_metrics or {}).items() if value is not None}
                if table == "batch_views":
                    head = (row.view_name, row.key, when(row.span_ms))
                    values = (*head, version, when(row.window_ms), ints, floats)
                else:
                    head = (row.view_name, when(row.window_ms))
                    values = (*head, version, row.key, ints, floats)
                if batch is None:
                    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=level)
                    if retire_below is not None:
                        batch.add(delete, (*head, retire_below))
                elif len(batch) >= ROWS_PER_BATCH:
                    statements.append((batch, ()))
                    batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=level)
                batch.add(insert, values)
                written += 1
            statements.append((batch, ()))
            if len(statements) >= target.concurrency * 4:
                flush()
        flush()
        yield written
    finally:
        cluster.shutdown()
