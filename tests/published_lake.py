"""One published two-part lake for the whole test session, built once (tests/conftest.py: `published_lake`).

Records A (the first 1,600 of the generator's 3,000) land in early handoff buckets, B in later ones; a full batch
version is published at A's last bucket, so A is served by the batch layer and B by the speed layer, and a last speed
run marks B's buckets complete (the DAG's default cutoff reaches B). The generator's records are the oracle's input.

Tests that only read it share it (the serving layer's merged answers, the first publish of the batch layer). A test
that publishes past it takes a `fork()`: the same state copied under a keyspace and a lake of its own, in seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from batch.cassandra_io import VersionRecord
from braid.cassandra import cluster_from_settings
from schemas.contracts import rules
from schemas.views import default_views
from tests.speed.oracle import expected_views
from tests.speed.test_speed_job import Stream, _wait

SENT_A, SENT = 1600, 3000
QUIET = {"log": lambda message: None, "max_restarts": 0, "handle_signals": False}


@dataclass(frozen=True)
class FirstPublish:
    """What the version published at A's cutoff left, read right after its publish."""

    record: VersionRecord
    retired_through: int | None
    speed_buckets: set[int]
    served: tuple[int, int, dict]
    view_table_versions: set[int]
    view_table_rows: int


class Lake:
    """A master dataset in two parts the speed layer landed in different handoff buckets: A up to bucket `cutoff_a`,
    A + B up to `cutoff_b`; `first` is the version published at `cutoff_a`, when the lake was built."""

    def __init__(self, stream: Stream, cutoff_a: int, cutoff_b: int, sent_a: int, first: FirstPublish | None = None) -> None:
        self.stream, self.cutoff_a, self.cutoff_b, self.sent_a, self.first = stream, cutoff_a, cutoff_b, sent_a, first

    @property
    def settings(self):
        return self.stream.settings

    def expected(self, sent: int) -> dict:
        distinct = list({r.event["event_id"]: r.event for r in self.stream.records[:sent] if r.event is not None}.values())
        return expected_views(distinct, default_views())

    def served(self) -> tuple[int, int, dict]:
        """What a reader gets: the pointer, then that version's rows (view, key, window) -> metrics."""
        cluster = cluster_from_settings(self.settings)
        try:
            session = cluster.connect(self.stream.keyspace)
            pointer = session.execute("SELECT version, cutoff FROM batch_pointer WHERE pipeline = 'views'").one()
            return pointer.version, pointer.cutoff, self.rows(session, pointer.version)
        finally:
            cluster.shutdown()

    @staticmethod
    def rows(session, version: int) -> dict:
        result = {}
        statement = session.prepare("SELECT view_name, key, window_start, int_metrics, float_metrics FROM batch_views WHERE version = ? ALLOW FILTERING")
        for row in session.execute(statement, (version,)):
            start = row.window_start.replace(tzinfo=UTC)
            result[(row.view_name, row.key, int(start.timestamp()))] = {**(row.int_metrics or {}), **(row.float_metrics or {})}
        return result

    def fork(self, tmp_path: Path) -> Lake:
        return Lake(self.stream.fork(tmp_path), self.cutoff_a, self.cutoff_b, self.sent_a, self.first)


def _next_bucket(settings, after: int) -> None:
    seconds = rules(settings.rules_file).handoff_bucket_seconds
    _wait(lambda: time.time() // seconds > after, seconds + 5, "the next handoff bucket")


def build(services, spark, tmp_path: Path) -> Lake:
    from batch.job import batch_context, new_run_id, run_all
    from batch.stages import FULL
    from speed.main import run_speed

    stream = Stream(services, tmp_path, seed=61, count=SENT, max_offsets=5000)
    stream.produce(SENT_A)
    run_speed(stream.settings, once=True, **QUIET)
    cutoff_a = stream.progress().last_bucket
    _next_bucket(stream.settings, cutoff_a)  # B lands after A's buckets
    stream.produce(SENT)
    run_speed(stream.settings, once=True, **QUIET)
    cutoff_b = stream.progress().last_bucket
    lake = Lake(stream, cutoff_a, cutoff_b, SENT_A)
    with batch_context(lake.settings, log=lambda m: None) as context:
        record = run_all(spark, context, new_run_id(), cutoff_a, FULL)
        retired_through = context.store.speed_retired_through()
    table = spark.read.format("delta").option("versionAsOf", record.view_tables["payments_by_merchant"]).load(
        f"{lake.settings.lake_root}/views/payments_by_merchant"
    )
    lake.first = FirstPublish(
        record=record,
        retired_through=retired_through,
        speed_buckets={row.handoff_bucket for row in stream.speed_rows()},
        served=lake.served(),
        view_table_versions={row.batch_version for row in table.select("batch_version").distinct().collect()},
        view_table_rows=table.count(),
    )
    _next_bucket(stream.settings, cutoff_b)
    run_speed(stream.settings, once=True, **QUIET)  # nothing new: marks B's buckets complete, the DAG's default cutoff
    return lake
