"""The speed layer against real Kafka, Spark/Delta and Cassandra: master dataset, quarantine and speed views equal
an independent account of the generated stream. A kill -9 of the job and a Cassandra outage are tests/faults
(test_speed_killed.py, test_cassandra_killed.py), which also cover `braid speed start`, `braid status` and `speed stop`."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from braid.cassandra import cluster_from_settings, replication_map
from braid.generator import EventGenerator, GeneratorConfig
from braid.kafka import create_topic
from braid.migrations import load_migrations, migrate
from braid.producer import EventProducer
from braid.settings import load_settings
from braid.layout import shard_of
from schemas.contracts import default_contracts, rules
from schemas.views import default_views
from tests.speed.oracle import expected_views, merged_speed_rows

pytestmark = [pytest.mark.services, pytest.mark.spark]


class Stream:
    """A generated stream produced to its own topic, with the records kept as the oracle's input."""

    def __init__(self, services, tmp_path: Path, seed: int, count: int, max_offsets: int, dead_letter: bool = False) -> None:
        self.name = self.keyspace = f"speed{uuid.uuid4().hex[:8]}"  # the topic, and the keyspace until forked
        create_topic(services.kafka_bootstrap_servers, self.name, partitions=3, replication=1)
        if dead_letter:
            create_topic(services.kafka_bootstrap_servers, f"{self.name}.dead", partitions=1, replication=1)
        self.overrides = {
            "speed_dead_letter": dead_letter,
            "dead_letter_topic": f"{self.name}.dead",
            "events_topic": self.name,
            "cassandra_keyspace": self.name,
            "delta_root": str(tmp_path / "lake"),
            "checkpoint_root": str(tmp_path / "checkpoints"),
            "speed_max_offsets_per_trigger": max_offsets,
            "speed_trigger_seconds": 1.0,
            "speed_archive_seconds": 2.0,  # a group of a few micro-batches per Delta commit, without a long wait
            "speed_archive_max_seconds": 4.0,  # a fault shows and a restart recovers within seconds, not 30
        }
        self.settings = load_settings(**self.overrides)
        cluster = cluster_from_settings(self.settings)
        migrate(cluster.connect(), self.keyspace, replication_map("SimpleStrategy", 1, "dc"), load_migrations())
        cluster.shutdown()
        config = GeneratorConfig(
            seed=seed, count=count, start=datetime.now(UTC), late_fraction=0.1, duplicate_fraction=0.05, malformed_fraction=0.04
        )
        self.records = list(EventGenerator(config).records())
        self.sent = 0

    @property
    def env(self) -> dict[str, str]:
        return {f"BRAID_{key.upper()}": str(value) for key, value in self.overrides.items()}

    def produce(self, until: int) -> None:
        producer = EventProducer(self.settings.kafka_bootstrap_servers, self.name, registry=default_contracts(), validator=None)
        for record in self.records[self.sent : until]:
            producer.send_raw(record.key, record.value)
        producer.flush()
        producer.close()
        self.sent = until

    def fork(self, tmp_path: Path) -> Stream:
        """This stream's state copied under a keyspace, a lake and checkpoints of its own, on the same topic and
        records: a test that publishes past a shared lake starts from a copy in seconds rather than a rebuild."""
        twin = copy.copy(self)
        twin.keyspace = f"fork{uuid.uuid4().hex[:8]}"
        roots = {"delta_root": str(tmp_path / "lake"), "checkpoint_root": str(tmp_path / "checkpoints")}
        twin.overrides = {**self.overrides, "cassandra_keyspace": twin.keyspace, **roots}
        twin.settings = load_settings(**twin.overrides)
        shutil.copytree(self.settings.lake_root, twin.settings.lake_root)
        shutil.copytree(self.settings.checkpoints, twin.settings.checkpoints)
        cluster = cluster_from_settings(self.settings)
        try:
            session = cluster.connect()
            migrate(session, twin.keyspace, replication_map("SimpleStrategy", 1, "dc"), load_migrations())
            copy_keyspace(session, self.keyspace, twin.keyspace)
        finally:
            cluster.shutdown()
        return twin

    def speed_rows(self) -> list:
        cluster = cluster_from_settings(self.settings)
        try:
            return list(cluster.connect(self.keyspace).execute("SELECT * FROM speed_views"))
        finally:
            cluster.shutdown()

    def progress(self):
        cluster = cluster_from_settings(self.settings)
        try:
            return cluster.connect(self.keyspace).execute("SELECT * FROM pipeline_progress WHERE job = 'speed'").one()
        finally:
            cluster.shutdown()


def copy_keyspace(session, source: str, target: str) -> None:
    """Every row of every table of `source` into the same tables of `target` (migrated already; no counters)."""
    from cassandra.concurrent import execute_concurrent_with_args

    for table in session.cluster.metadata.keyspaces[source].tables.values():
        columns = ", ".join(f'"{name}"' for name in table.columns)
        rows = list(session.execute(f"SELECT {columns} FROM {source}.{table.name}"))
        insert = session.prepare(f"INSERT INTO {target}.{table.name} ({columns}) VALUES ({', '.join('?' * len(table.columns))})")
        for ok, result in execute_concurrent_with_args(session, insert, rows, concurrency=64, raise_on_first_error=True):
            assert ok, result
        assert session.execute(f"SELECT count(*) FROM {target}.{table.name}").one()[0] == len(rows), table.name


def assert_matches_the_oracle(spark, stream: Stream, views: bool = True) -> None:
    """`views=False` leaves out the speed views (a published batch version retires their rows up to its cutoff)."""
    from functools import reduce

    from pyspark.sql import functions as F

    produced = stream.records[: stream.sent]
    valid = [r for r in produced if r.event is not None]
    distinct = list({r.event["event_id"]: r.event for r in valid}.values())
    malformed = [r for r in produced if r.event is None]
    lake = stream.settings.lake_root

    master = reduce(
        lambda a, b: a.unionByName(b),
        [spark.read.format("delta").load(f"{lake}/master/{t}").select("event_id", "kafka_partition", "kafka_offset") for t in ("payment", "page_view")],
    )
    master_ids = Counter(row.event_id for row in master.collect())
    assert master_ids == Counter(r.event["event_id"] for r in valid)  # raw: duplicates kept, nothing twice from replays

    quarantine = spark.read.format("delta").load(f"{lake}/quarantine")
    assert Counter(row.reason for row in quarantine.select("reason").collect()) == Counter(r.expected_reason for r in malformed)
    assert sorted(bytes(row.raw) for row in quarantine.select("raw").collect()) == sorted(r.value for r in malformed)
    coordinates = master.select("kafka_partition", "kafka_offset").union(quarantine.select("kafka_partition", "kafka_offset"))
    assert coordinates.distinct().count() == len(produced)  # every Kafka record once: master + quarantine = produced
    assert quarantine.where(F.col("topic") != stream.name).count() == 0

    if not views:
        return
    views = default_views()
    rows = stream.speed_rows()
    assert all(row.shard == shard_of(row.key, rules().view_shards) for row in rows)  # where the serving reads look
    assert merged_speed_rows(rows, views) == expected_views(distinct, views)


def test_stream_lands_exactly_in_master_quarantine_and_views(spark, services, tmp_path: Path) -> None:
    from speed.main import run_speed

    stream = Stream(services, tmp_path, seed=31, count=3000, max_offsets=1200, dead_letter=True)
    stream.produce(2000)
    first: list[str] = []
    run_speed(stream.settings, once=True, log=first.append, max_restarts=0, handle_signals=False)
    stream.produce(3000)  # a second run: duplicates of events from the first one must not be counted again
    second: list[str] = []
    run_speed(stream.settings, once=True, log=second.append, max_restarts=0, handle_signals=False)
    assert_matches_the_oracle(spark, stream)
    # the de-duplication index is read from Delta once per run (then kept up to date batch by batch), and the second
    # run's starts from what the first committed
    assert sum(" records, " in line for line in first) >= 2, first  # 2,000 records in batches of 1,200 at most
    for logs in (first, second):
        assert sum("de-duplication index loaded" in line for line in logs) == 1, logs
    loaded = next(line for line in second if "de-duplication index loaded" in line)
    assert int(loaded.split(": ")[-1].split(" ")[0]) > 0
    from tests.braid.test_producer import consume_all

    dead = consume_all(services.kafka_bootstrap_servers, f"{stream.name}.dead")
    malformed = [r for r in stream.records if r.event is None]
    assert sorted(record.value for record in dead) == sorted(r.value for r in malformed)  # no crash here: exactly once
    assert Counter(dict(record.headers)["braid.reason"].decode() for record in dead) == Counter(r.expected_reason for r in malformed)
    progress = stream.progress()
    assert progress.last_batch >= 2 and progress.complete_through >= progress.last_bucket - 1


def _speed_process(stream: Stream, log: Path) -> subprocess.Popen:
    env = {**os.environ, **stream.env}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "braid.cli", "speed", "run"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
