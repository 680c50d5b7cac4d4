"""The Kafka broker killed with SIGKILL and restarted while the generator produces and a running `braid speed run`
consumes: the idempotent producer holds its records through the outage and retries them without writing any twice,
the same speed process resumes reading from the restarted broker, and once it has caught up nothing is lost and
nothing is counted twice (tests/faults/recovery.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from braid.producer import EventProducer
from braid.services import local, process
from schemas.views import default_views
from tests.faults import recovery
from tests.faults.recovery import Flow, assert_recovered, caught_up, kill_9, master_count, publish_batch, speed_process, wait_for
from tests.speed.oracle import expected_views, merged_speed_rows
from tests.speed.test_speed_job import Stream

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.spark]

RATE = 30.0  # events per second
WARM_UP, DURING, AFTER = 300, 1050, 600  # records: before the fault, from just before it (35 s), after the batch publish
OUTAGE_SECONDS = 15.0


class Acknowledgements:
    """What the flow's producer has handed to Kafka and what Kafka has acknowledged, counted as it happens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = self.acknowledged = self.failed = 0

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    @property
    def pending(self) -> int:
        with self._lock:
            return self.sent - self.acknowledged - self.failed


def counting_producer(tally: Acknowledgements) -> type[EventProducer]:
    class CountingProducer(EventProducer):
        def send_raw(self, key: bytes | None, value: bytes):
            future = super().send_raw(key, value)
            tally.count("sent")
            future.add_callback(lambda _: tally.count("acknowledged"))
            future.add_errback(lambda _: tally.count("failed"))
            return future

    return CountingProducer


def kill_9_service(spec: process.ServiceSpec) -> int:
    """SIGKILL to the pid in the service's pid file; returns once the process is gone (reaped when it is our child)."""
    pid = int(spec.pid_file.read_text())
    assert process.running_pid(spec) == pid, f"{spec.name}: pid {pid} of {spec.pid_file} is not running"
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 30, f"{spec.name} (pid {pid}) to die", every=0.1)
    return pid


class Parts:
    """The stream's records produced in parts, each by its own Flow once the previous one has finished: a warm-up
    that gets the speed job past its slow first batch, the part the fault hits, and a part after the batch publish."""

    def __init__(self, stream: Stream) -> None:
        self.stream, self.held = stream, list(stream.records)
        stream.records.clear()  # a Flow produces up to the end of the list: it holds only the parts released so far
        self.flows: list[Flow] = []

    def produce(self, count: int, rate: float) -> Flow:
        assert not any(flow.is_alive() for flow in self.flows), "a part starts once the previous one has finished"
        self.stream.records.extend(self.held[:count])
        del self.held[:count]
        self.flows.append(Flow(self.stream, rate))
        self.flows[-1].start()
        return self.flows[-1]

    @property
    def failures(self) -> list[str]:
        return [failure for flow in self.flows for failure in flow.failures]

    def stop(self) -> None:
        for flow in self.flows:
            if flow.is_alive():
                flow.stop()


def last_batch(stream: Stream) -> int:
    progress = stream.progress()
    return -1 if progress is None else progress.last_batch


def valid_among_first(stream: Stream, count: int) -> int:
    return sum(1 for record in stream.records[:count] if record.event is not None)


def views_exact(spark, stream: Stream) -> bool:
    """Every record sent has landed and the speed views equal the oracle's: the speed job has caught up."""
    views = default_views()
    distinct = list({r.event["event_id"]: r.event for r in stream.records[: stream.sent] if r.event is not None}.values())
    return caught_up(spark, stream) and merged_speed_rows(stream.speed_rows(), views) == expected_views(distinct, views)


def committed(spark, stream: Stream) -> bool:
    """Every record sent has landed, and the micro-batch that landed the newest of them has committed its views too
    (once a batch version is published, it retires the speed rows it covers: the views no longer equal the oracle's)."""
    from pyspark.sql import functions as F

    if not caught_up(spark, stream):
        return False
    lake = stream.settings.lake_root
    tables = [f"{lake}/master/{t}" for t in ("payment", "page_view")] + [f"{lake}/quarantine"]
    newest = max(spark.read.format("delta").load(t).agg(F.max("speed_batch")).first()[0] for t in tables if Path(t).exists())
    return last_batch(stream) >= newest


def stop_gracefully(job: subprocess.Popen) -> None:
    """SIGTERM (the job stops its query and exits), then whatever is left of its process group is killed."""
    if job.poll() is None:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pass
    kill_9(job)


def test_kafka_broker_killed_while_producing_and_consuming(spark, services, tmp_path: Path, monkeypatch) -> None:
    tally = Acknowledgements()
    monkeypatch.setattr(recovery, "EventProducer", counting_producer(tally))
    stream = Stream(services, tmp_path, seed=81, count=WARM_UP + DURING + AFTER, max_offsets=500)
    parts = Parts(stream)
    kafka = local.local_specs(services)[0]
    log = tmp_path / "speed.log"
    job = speed_process(stream, log, {"PYTHONUNBUFFERED": "1"})
    try:
        parts.produce(WARM_UP, rate=100).finish()
        wait_for(lambda: last_batch(stream) >= 0, 300, "a batch committed by the speed job", every=0.5)
        first_bucket = stream.progress().last_bucket
        flow = parts.produce(DURING, rate=RATE)
        wait_for(lambda: tally.acknowledged >= WARM_UP + RATE * 5, 60, "the flow to be acknowledged")
        batch_at_kill = last_batch(stream)
        assert flow.is_alive(), "the kill must come while the flow produces"

        killed = kill_9_service(kafka)
        sent_at_kill = tally.sent
        time.sleep(OUTAGE_SECONDS)
        # The producer kept taking records while no broker answered: they wait in its buffer, unacknowledged.
        assert flow.is_alive() and not flow.failures
        assert tally.sent - sent_at_kill >= RATE * OUTAGE_SECONDS / 2, f"only {tally.sent - sent_at_kill} records sent during the outage"
        assert tally.pending >= RATE * OUTAGE_SECONDS / 2, f"only {tally.pending} records unacknowledged at the restart"
        assert tally.acknowledged <= sent_at_kill  # nothing sent since the kill was acknowledged: no broker answered
        assert job.poll() is None, f"the speed job exited with {job.returncode} while the broker was down; see {log}"

        local.up(services, log=lambda m: None)
        assert process.running_pid(kafka) not in (None, killed)
        batch_at_restart = last_batch(stream)
        # Progress again, from the restarted broker: a committed batch holding records sent after the kill.
        wait_for(
            lambda: last_batch(stream) > batch_at_restart and master_count(spark, stream) > valid_among_first(stream, sent_at_kill),
            300, "the same speed job to commit records sent after the kill", every=2,
        )  # fmt: skip
        assert last_batch(stream) > batch_at_kill
        flow.finish()
        assert tally.pending == 0 and tally.failed == 0 and tally.acknowledged == stream.sent == WARM_UP + DURING
        wait_for(lambda: views_exact(spark, stream), 300, "the speed job to catch up", every=3)

        # A batch version over the complete buckets, then more events: those reach only the speed views, so the
        # merged answers must combine both sides at the boundary.
        wait_for(lambda: stream.progress().complete_through >= first_bucket, 120, "a complete handoff bucket with events")
        publish_batch(spark, stream, "after-broker-kill")
        parts.produce(AFTER, rate=100).finish()
        wait_for(lambda: committed(spark, stream), 300, "the speed job to catch up with the last part", every=3)
        assert job.poll() is None, "the speed job must have ridden out the outage without a restart"
    finally:
        local.up(services, log=lambda m: None)  # the session's stack back for the tests that follow, whatever happened
        stop_gracefully(job)
        parts.stop()
    assert job.returncode == 0, f"the speed job did not stop cleanly ({job.returncode}); see {log}"
    sources = assert_recovered(spark, stream, parts.failures)
    assert sources & {"batch", "both"} and sources & {"speed", "both"}, f"the merge had one side only: {sources}"
