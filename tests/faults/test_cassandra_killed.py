"""Cassandra killed with SIGKILL and restarted while the speed layer, started in the background by `braid speed start`,
writes its views and a running `braid serve` answers queries: meanwhile the API answers 503 with the reason on its queries and on /health, then
answers again by itself once Cassandra is back (the same process); the speed job retries its failed batches from its
checkpoint and catches up (the same process), and nothing is lost or counted twice (tests/faults/recovery.py). Also the
background commands: `braid status` while the job runs, `braid speed stop` at the end."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from braid.services import background, local, process
from schemas.views import default_views
from tests.faults.recovery import assert_recovered, publish_batch, wait_for
from tests.faults.test_kafka_broker_killed import Parts, committed, kill_9_service, last_batch, stop_gracefully, views_exact
from tests.speed.test_speed_job import Stream

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.spark]

RATE = 30.0  # events per second
WARM_UP, DURING, AFTER = 300, 1050, 600  # records: before the fault, from just before it (35 s), after the batch publish
OUTAGE_SECONDS = 20.0
UNAVAILABLE = "cassandra: no node answers; the answer cannot be read right now"
TOP = "/v1/views/page_views_by_country/top"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api_process(stream: Stream, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, **stream.env, "BRAID_SERVING_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "braid.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def refused(answer: httpx.Response, body: dict) -> bool:
    """A 503 whose JSON body gives the reason."""
    assert answer.status_code in (200, 503), f"{answer.request.url.path}: {answer.status_code} {answer.text}"
    if answer.status_code == 200:
        return False
    assert answer.json() == body, f"{answer.request.url.path}: {answer.text}"
    return True


def test_cassandra_killed_while_the_speed_layer_writes_and_queries_run(spark, services, tmp_path: Path) -> None:
    from serving.main import open_queries

    stream = Stream(services, tmp_path, seed=82, count=WARM_UP + DURING + AFTER, max_offsets=500)
    parts = Parts(stream)
    cassandra = local.local_specs(services)[1]
    api_log = tmp_path / "api.log"
    port = free_port()
    api = api_process(stream, port, api_log)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    env = {**os.environ, **stream.env, "PYTHONUNBUFFERED": "1"}
    spec = background.speed_spec(stream.settings)
    speed_log = spec.log_file
    started = subprocess.run([sys.executable, "-m", "braid.cli", "speed", "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("speed: running in the background (pid ")
    job_pid = process.running_pid(spec)
    assert job_pid is not None and started.stdout.startswith(f"speed: running in the background (pid {job_pid}")

    def job_alive() -> bool:
        return process.running_pid(spec) == job_pid

    query = {"start": "-4h", "n": "50"}
    stop_seconds = None
    try:
        wait_for(lambda: http.get("/health").status_code == 200, 60, "the API to answer /health")
        parts.produce(WARM_UP, rate=100).finish()
        wait_for(lambda: last_batch(stream) >= 0, 300, "a batch committed by the speed job", every=0.5)
        first_bucket = stream.progress().last_bucket
        status = subprocess.run([sys.executable, "-m", "braid.cli", "status"], env=env, capture_output=True, text=True).stdout
        assert status.splitlines()[3].split()[:4] == ["speed", "-", str(job_pid), "up"], status
        assert re.search(r"speed layer: batch \d+, handoff bucket \d+", status), status
        assert "freshness (produced -> in Cassandra): p50" in status, status
        answered = http.get(TOP, params=query)
        assert answered.status_code == 200 and answered.json()["entries"], answered.text
        flow = parts.produce(DURING, rate=RATE)
        time.sleep(5)
        batch_at_kill, log_at_kill = last_batch(stream), speed_log.stat().st_size

        killed = kill_9_service(cassandra)
        killed_at = time.monotonic()
        # Queries and /health are refused with the reason, not left hanging or failing as an internal error.
        while time.monotonic() - killed_at < OUTAGE_SECONDS:
            assert refused(http.get("/health"), {"status": "unavailable", "error": UNAVAILABLE})
            assert refused(http.get(TOP, params=query), {"error": UNAVAILABLE})
            time.sleep(1)
        assert flow.is_alive() and job_alive() and api.poll() is None

        local.up(services, log=lambda m: None)
        assert process.running_pid(cassandra) not in (None, killed)
        restarted_at = time.monotonic()

        # The same API process answers again by itself; until then it refuses with the reason, never a 500.
        def answers_again() -> bool:
            health, top = http.get("/health"), http.get(TOP, params=query)
            return not refused(health, {"status": "unavailable", "error": UNAVAILABLE}) and not refused(top, {"error": UNAVAILABLE})

        wait_for(answers_again, 180, "the API to answer again after Cassandra came back")
        print(f"cassandra down {restarted_at - killed_at:.0f}s; the API answered {time.monotonic() - restarted_at:.0f}s after its restart")
        assert http.get("/health").json() == {"status": "ok"} and api.poll() is None

        # The same speed job commits again, past the batches it failed while Cassandra was down, and catches up.
        wait_for(lambda: last_batch(stream) > batch_at_kill, 300, "the speed job to commit a batch after the outage", every=2)
        flow.finish()
        wait_for(lambda: views_exact(spark, stream), 300, "the speed job to catch up", every=3)

        # A batch version over the complete buckets, then more events: those reach only the speed views, so the
        # merged answers must combine both sides at the boundary.
        wait_for(lambda: stream.progress().complete_through >= first_bucket, 120, "a complete handoff bucket with events")
        publish_batch(spark, stream, "after-cassandra-kill")
        parts.produce(AFTER, rate=100).finish()
        wait_for(lambda: committed(spark, stream), 300, "the speed job to catch up with the last part", every=3)
        assert job_alive() and api.poll() is None, "the speed job and the API must have ridden out the outage"
        assert_api_answers_as_the_library(http, stream, open_queries)
    finally:
        local.up(services, log=lambda m: None)  # the session's stack back for the tests that follow, whatever happened
        began = time.monotonic()
        stopped = subprocess.run([sys.executable, "-m", "braid.cli", "speed", "stop"], env=env, capture_output=True, text=True)
        stop_seconds = time.monotonic() - began
        stop_gracefully(api)
        http.close()
        parts.stop()
    assert stopped.stdout.strip() == "speed: stopped", stopped.stdout + stopped.stderr
    assert process.running_pid(spec) is None
    # `speed stop` sends SIGTERM and kills only past 120 s: a job that stops cleanly is gone long before.
    assert stop_seconds < 90, f"the speed job took {stop_seconds:.0f} s to stop on SIGTERM; see {speed_log}"
    # The speed job said why its batches failed, and that it retried them from its checkpoint.
    retried = [line for line in speed_log.read_text(errors="replace")[log_at_kill:].splitlines() if line.startswith("speed: the query failed (")]
    assert retried, f"no failed batch logged in {speed_log}"
    assert retried[0].startswith("speed: the query failed (cassandra.cluster.NoHostAvailable: "), retried
    assert all(line.startswith("speed: the query failed (cassandra.") for line in retried), retried  # booting: timeouts too
    assert all(line.endswith("; restarting from the checkpoint in 5s") for line in retried), retried
    sources = assert_recovered(spark, stream, parts.failures)
    assert sources & {"batch", "both"} and sources & {"speed", "both"}, f"the merge had one side only: {sources}"


def assert_api_answers_as_the_library(http: httpx.Client, stream: Stream, open_queries) -> None:
    """Every view's `top` and its first key's `series` over HTTP equal what the library answers (which
    `assert_recovered` checks against the ground truth)."""
    start, end = datetime.now(UTC) - timedelta(hours=4), datetime.now(UTC) + timedelta(minutes=10)
    window = {"start": start.isoformat(), "end": end.isoformat()}
    with open_queries(stream.settings) as queries:
        for view in default_views().values():
            metric = next(m.name for m in view.metrics if m.aggregate == "count")
            answer = http.get(f"/v1/views/{view.name}/top", params={**window, "n": "1000", "metric": metric})
            assert answer.status_code == 200, answer.text
            expected = queries.top(view.name, start, end, n=1000, metric=metric)
            got = answer.json()
            assert got["entries"] == [{"key": e.key, "value": e.value, "metrics": e.metrics, "source": e.source} for e in expected.entries]
            assert (got["freshness"]["batch_version"], got["freshness"]["speed_batch"]) == (
                expected.freshness.batch_version, expected.freshness.speed_batch,
            )  # fmt: skip
            key = expected.entries[0].key
            series = http.get(f"/v1/views/{view.name}/series", params={**window, "key": key})
            assert series.status_code == 200, series.text
            points = queries.series(view.name, key, start, end).points
            assert [(p["window_start"], p["metrics"], p["source"]) for p in series.json()["points"]] == [
                (p.window_start.isoformat().replace("+00:00", "Z"), p.metrics, p.source) for p in points
            ], f"{view.name} {key}"
