"""What every fault case ends with once the system has recovered, checked against an independent account of the
records the test produced (plain Python over the generator's output, tests/speed/oracle.py):

- produced = master + quarantine: the topic holds exactly the records the producer was acknowledged for (the
  idempotent producer wrote no retried batch twice), and each of them is once in the Delta master dataset or once in
  quarantine, with the reason the generator meant;
- no duplicate in any view: the speed views equal the oracle's aggregation of distinct events;
- merged answers equal the ground truth: `top` over the whole range (every key's totals) and `series` of the largest
  keys through the serving layer, batch version and speed rows merged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from braid.producer import EventProducer
from schemas.contracts import default_contracts
from schemas.views import default_views
from tests.speed.oracle import expected_views, per_key_totals
from tests.speed.test_speed_job import Stream, assert_matches_the_oracle


class Flow(threading.Thread):
    """The stream's records produced in the background at about `rate` per second, as a producer in production would:
    acks=all, idempotent, retrying through broker outages. `stop()` waits for every acknowledgement."""

    def __init__(self, stream: Stream, rate: float) -> None:
        super().__init__(daemon=True)
        self.stream, self.rate = stream, rate
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        producer = EventProducer(
            self.stream.settings.kafka_bootstrap_servers, self.stream.name, registry=default_contracts(), validator=None,
            max_block_ms=180_000, delivery_timeout_ms=180_000, request_timeout_ms=30_000,
        )  # fmt: skip
        futures = []
        started, sent = time.monotonic(), self.stream.sent
        try:
            for index in range(self.stream.sent, len(self.stream.records)):
                if self._halt.is_set():
                    break
                record = self.stream.records[index]
                futures.append(producer.send_raw(record.key, record.value))
                sent = index + 1
                ahead = (sent - self.stream.sent) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush(timeout=240)
            for future in futures:
                try:
                    future.get(timeout=60)
                except Exception as error:  # an event the producer gave up on: the test must see it, not lose it
                    self.failures.append(f"{type(error).__name__}: {error}")
        finally:
            producer.close(timeout=30)
            self.stream.sent = sent

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=600)
        assert not self.is_alive(), "the producer did not finish within 10 minutes"

    def finish(self, timeout: float = 600) -> None:
        """Let the flow produce every record, then wait for the acknowledgements."""
        self.join(timeout=timeout)
        assert not self.is_alive(), f"the producer did not finish within {timeout:.0f}s"


def topic_records(stream: Stream) -> int:
    """How many records the stream's topic holds: end minus beginning offsets over its partitions."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=stream.settings.kafka_bootstrap_servers)
    try:
        partitions = [TopicPartition(stream.name, p) for p in consumer.partitions_for_topic(stream.name)]
        ends, begins = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        return sum(ends[p] - begins[p] for p in partitions)
    finally:
        consumer.close()


def speed_process(stream: Stream, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`braid speed run` as its own process group, so that a kill -9 takes the JVM and the Python workers with it."""
    env = {**os.environ, **stream.env, **(extra_env or {})}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "braid.cli", "speed", "run"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_9(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def wait_for(condition, timeout: float, what: str, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as error:  # the services may be down or restarting while we wait
            last = error
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))


def master_count(spark, stream: Stream) -> int:
    lake = stream.settings.lake_root
    return sum(spark.read.format("delta").load(f"{lake}/master/{t}").count() for t in ("payment", "page_view") if Path(f"{lake}/master/{t}").exists())


def quarantine_count(spark, stream: Stream) -> int:
    path = f"{stream.settings.lake_root}/quarantine"
    return spark.read.format("delta").load(path).count() if Path(path).exists() else 0


def landed(spark, stream: Stream) -> int:
    """Rows the committed micro-batches wrote to the master dataset and quarantine: the records they consumed."""
    return master_count(spark, stream) + quarantine_count(spark, stream)


def caught_up(spark, stream: Stream) -> bool:
    """The speed layer has landed every record of a finished flow (the views are checked by `assert_recovered`)."""
    return landed(spark, stream) == stream.sent


def assert_merged_answers_equal_the_truth(stream: Stream) -> set[str]:
    """Every key's totals (`top`) and the largest keys' windows (`series`) through the serving layer; returns the
    provenances the answers carried, so a case can show the merge had both sides."""
    from serving.main import open_queries

    distinct = list({r.event["event_id"]: r.event for r in stream.records[: stream.sent] if r.event is not None}.values())
    expected = expected_views(distinct, default_views())
    start, end = datetime.now(UTC) - timedelta(hours=4), datetime.now(UTC) + timedelta(minutes=10)  # late events: 3 h back
    sources: set[str] = set()
    with open_queries(stream.settings) as queries:
        for view in default_views().values():
            totals = per_key_totals(expected, view)
            assert 0 < len(totals) <= queries.max_top, f"{view.name}: {len(totals)} keys; the case must fit one top query"
            metric = next(m.name for m in view.metrics if m.aggregate == "count")
            answer = queries.top(view.name, start, end, n=queries.max_top, metric=metric)
            got = {json.dumps(e.key, separators=(",", ":"), ensure_ascii=False): e.metrics for e in answer.entries}
            assert got == totals, f"{view.name}: merged top differs from the ground truth on {_differences(got, totals)}"
            sources |= {e.source for e in answer.entries}
            windows: dict[str, int] = defaultdict(int)
            for name, key, _ in expected:
                if name == view.name:
                    windows[key] += 1
            for key in sorted(windows, key=lambda k: (-windows[k], k))[:3]:
                series = queries.series(view.name, json.loads(key), start, end)
                got_points = {(view.name, key, int(p.window_start.timestamp())): p.metrics for p in series.points}
                assert got_points == {g: m for g, m in expected.items() if g[:2] == (view.name, key)}, f"{view.name} {key}: series differs"
                sources |= {p.source for p in series.points}
    return sources


def _differences(got: dict, want: dict) -> str:
    keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    return "; ".join(f"{k}: got {got.get(k)} want {want.get(k)}" for k in keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def assert_recovered(spark, stream: Stream, failures: list[str] | None = None) -> set[str]:
    """The accounting every case ends with; returns the provenances of the merged answers. Unless the case published
    a batch version itself, the speed views are compared whole first, then a version is published up to the bucket
    before the newest one the master dataset holds, so that the merged answers have both sides."""
    assert not failures, f"the producer gave up on {len(failures)} records: {failures[:3]}"
    assert topic_records(stream) == stream.sent  # the idempotent producer's retries wrote nothing twice
    published = _pointer(stream) is not None
    assert_matches_the_oracle(spark, stream, views=not published)  # produced = master + quarantine, each record once
    if not published:
        newest = max(_buckets(spark, stream))
        publish_batch(spark, stream, "after-recovery", newest - 1)
    return assert_merged_answers_equal_the_truth(stream)


def _buckets(spark, stream: Stream) -> set[int]:
    lake = stream.settings.lake_root
    tables = [spark.read.format("delta").load(f"{lake}/master/{t}").select("handoff_bucket") for t in ("payment", "page_view")]
    return {row.handoff_bucket for row in tables[0].union(tables[1]).distinct().collect()}


def _pointer(stream: Stream):
    from braid.cassandra import cluster_from_settings

    cluster = cluster_from_settings(stream.settings)
    try:
        return cluster.connect(stream.keyspace).execute("SELECT version FROM batch_pointer WHERE pipeline = 'views'").one()
    finally:
        cluster.shutdown()


def publish_batch(spark, stream: Stream, run_id: str, cutoff: int | None = None):
    """A full batch version at `cutoff` (default: the newest bucket the speed layer reports complete)."""
    from batch.job import batch_context, run_all
    from batch.stages import FULL

    with batch_context(stream.settings, log=lambda m: None) as context:
        return run_all(spark, context, run_id, cutoff, FULL)
