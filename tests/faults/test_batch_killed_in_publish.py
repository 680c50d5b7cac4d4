"""The batch DAG's publish killed with SIGKILL half-way (rows of the new version written, the pointer not switched),
then retried by Airflow itself: a reader polling all along only ever sees whole versions, the retry continues the
same version rather than starting a second one, and the accounting holds (tests/faults/recovery.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from batch.job import batch_context
from braid.cassandra import cluster_from_settings
from tests.faults.recovery import assert_recovered, wait_for
from tests.published_lake import Lake

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.spark]

def _kill_publish_stage(airflow_pid: int) -> list[int]:
    """SIGKILL every process of the running publish spark-submit (its JVM and its Python driver) under this test's
    Airflow run, and only those: another worker of the suite may be running a DAG of its own."""
    victims = []
    for process in psutil.Process(airflow_pid).children(recursive=True):
        try:
            command = " ".join(process.cmdline())
            if "batch/main.py" in command and " stage publish " in f"{command} ":
                os.kill(process.pid, signal.SIGKILL)
                victims.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return victims


def test_publish_killed_half_way_then_retried_by_airflow(spark, published_lake: Lake, tmp_path: Path) -> None:
    lake = published_lake.fork(tmp_path / "fork")  # A served by a version at cutoff A, B by the speed layer, B's buckets complete
    stream, first, cutoff_a, cutoff_b = lake.stream, lake.first.record, lake.cutoff_a, lake.cutoff_b
    expected = {cutoff_a: lake.expected(lake.sent_a), cutoff_b: lake.expected(stream.sent)}
    assert expected[cutoff_a] != expected[cutoff_b] and lake.served()[:2] == (first.version, cutoff_a)

    def whole(cutoff: int) -> dict | None:
        # With short buckets the DAG's default cutoff (newest complete bucket) can be past cutoff_b; no event lands there.
        return expected[cutoff_b] if cutoff >= cutoff_b else expected.get(cutoff)

    seen, problems, errors, stop = [], [], [], threading.Event()

    def reader() -> None:  # what a dashboard reads with its one session: the pointer, then that version's rows
        from serving.api import _unavailable_errors

        not_now = _unavailable_errors()  # what the API answers 503 for (a timeout on a loaded machine): counted
        cluster = cluster_from_settings(stream.settings)
        session = cluster.connect(stream.keyspace)
        try:
            while not stop.is_set():
                try:
                    pointer = session.execute("SELECT version, cutoff FROM batch_pointer WHERE pipeline = 'views'").one()
                    rows = Lake.rows(session, pointer.version)
                except not_now as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                except BaseException as error:  # any other failure fails the test
                    problems.append(f"the reader failed: {error!r}")
                    return
                seen.append(pointer.version)
                if rows != whole(pointer.cutoff):
                    problems.append(f"version {pointer.version} (cutoff {pointer.cutoff}): {len(rows)} rows, not whole")
                time.sleep(0.2)
        finally:
            cluster.shutdown()

    airflow_home = tmp_path / "airflow"
    env = {
        **os.environ,
        **stream.env,
        "BRAID_BATCH_PUBLISH_CONCURRENCY": "1",  # a slow publish, so the kill lands inside it
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[2] / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    cluster = cluster_from_settings(stream.settings)
    killed_version, victims = None, []
    try:
        session = cluster.connect(stream.keyspace)
        newest = session.prepare("SELECT state, version FROM batch_versions WHERE pipeline = 'views' LIMIT 1")
        count = session.prepare("SELECT count(*) FROM batch_views WHERE version = ? ALLOW FILTERING")
        with open(tmp_path / "airflow.log", "wb") as out:
            run = subprocess.Popen([airflow, "dags", "test", "braid_batch", "-c", json.dumps({})], env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 900
        while killed_version is None and time.monotonic() < deadline and run.poll() is None:
            row = session.execute(newest).one()
            if row is not None and row.version > first.version and row.state == "publishing" and session.execute(count, (row.version,)).one()[0] > 0:
                victims = _kill_publish_stage(run.pid)  # rows of the new version are in Cassandra, the pointer not switched yet
                killed_version = row.version
                assert lake.served()[0] == first.version  # killed: the pointer never moved
            time.sleep(0.05)
        assert victims, f"the publish was not caught half-way:\n{(tmp_path / 'airflow.log').read_text()[-3000:]}"
        assert run.wait(timeout=900) == 0, (tmp_path / "airflow.log").read_text()[-5000:]
        wait_for(lambda: killed_version in seen, 30, "the reader to read the new version")
    finally:
        stop.set()
        thread.join(timeout=30)
        cluster.shutdown()
    assert problems == [] and len(seen) > 10 * len(errors), (problems, errors[:3])
    assert set(seen) >= {first.version, killed_version}  # the reader saw both sides of the switch, each whole
    version, cutoff, rows = lake.served()
    assert version == killed_version and cutoff >= cutoff_b and rows == expected[cutoff_b]  # the retry finished that version
    with batch_context(stream.settings, log=lambda m: None) as context:  # the version belongs to the Airflow run
        record = context.store.version(version)
        assert record.run_id.startswith("airflow-") and context.store.version_of_run(record.run_id).version == version
    with sqlite3.connect(airflow_home / "airflow.db") as db:  # Airflow's own record: publish failed once, then passed
        tries = db.execute("SELECT try_number, state FROM task_instance WHERE dag_id = 'braid_batch' AND task_id = 'publish'").fetchall()
        failed = db.execute("SELECT try_number, state FROM task_instance_history WHERE dag_id = 'braid_batch' AND task_id = 'publish'").fetchall()
    assert tries == [(2, "success")] and failed == [(1, "failed")], (tries, failed)
    sources = assert_recovered(spark, stream)
    assert sources & {"batch", "both"}
