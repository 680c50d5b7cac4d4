"""The disk of the Delta root made read-only for a while as events flow: first the whole root (no file can be written),
then only the tables' commit logs (data files are written, their commits fail: half-written output on disk). The
jobs fail loudly, resume by themselves once the disk is writable, nothing half-written is ever read, and the
accounting holds (tests/faults/recovery.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.faults.disk import READ_ONLY, unwritable
from tests.faults.recovery import Flow, assert_recovered, kill_9, landed, speed_process, wait_for
from tests.speed.test_speed_job import Stream

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.spark]

TABLES = ("master/payment", "master/page_view", "quarantine")


def _log_since(log: Path, offset: int) -> str:
    return log.read_bytes()[offset:].decode(errors="replace")


def _refused(log: Path, offset: int, lake: Path) -> bool:
    """The job's own line for the failure: what it could not write, where, and that it retries."""
    return any(
        line.startswith("speed: the query failed (storage: cannot ") and str(lake) in line and f"({READ_ONLY}));" in line
        and line.endswith("restarting from the checkpoint in 5s")
        for line in _log_since(log, offset).splitlines()
    )


def _last_batch(stream: Stream) -> int:
    progress = stream.progress()
    return -1 if progress is None else progress.last_batch


def test_an_unwritable_lake_fails_the_jobs_loudly_and_they_resume(spark, services, tmp_path: Path) -> None:
    from delta.tables import DeltaTable

    from speed.main import run_speed

    stream = Stream(services, tmp_path, seed=73, count=12000, max_offsets=250)  # more than both phases need: stopped after
    lake, log = Path(stream.settings.lake_root), tmp_path / "speed.log"
    flow = Flow(stream, rate=30)
    flow.start()
    job = speed_process(stream, log)
    try:
        first_commit = "_delta_log/00000000000000000000.json"  # the archive commits behind the view path
        wait_for(lambda: _last_batch(stream) >= 1 and all((lake / t / first_commit).is_file() for t in TABLES), 300, "the first batches")

        # 1. The whole root read-only: the speed job's batch fails and it retries from its checkpoint; a batch run
        # fails with one line saying what and where; nothing new is committed meanwhile.
        offset = log.stat().st_size
        with unwritable(lake):
            wait_for(lambda: _refused(log, offset, lake), 180, "the speed job to fail on the read-only lake and restart")
            frozen = (landed(spark, stream), _last_batch(stream))
            env = {**os.environ, **stream.env}
            batch = subprocess.run(
                [sys.executable, "-m", "braid.cli", "batch", "run", "--cutoff", str(stream.progress().last_bucket)],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert batch.returncode == 2, batch.stdout[-2000:] + batch.stderr[-3000:]
            # Spark's own start-up lines share stderr; Braid's is one line, the last.
            message = [line for line in batch.stderr.strip().splitlines() if line.startswith("braid: ")]
            assert message == batch.stderr.strip().splitlines()[-1:], batch.stderr[-3000:]
            assert message[0].startswith(f"braid: storage: cannot create {lake}/views/") and message[0].endswith(f"({READ_ONLY})")
            assert (landed(spark, stream), _last_batch(stream)) == frozen
        wait_for(lambda: _last_batch(stream) > frozen[1], 300, "the speed job to resume after the lake came back")

        # 2. Only the commit logs read-only: the batch's data files are written, its commits fail.
        offset = log.stat().st_size
        with ExitStack() as stack:
            for table in TABLES:
                stack.enter_context(unwritable(lake / table / "_delta_log"))
            wait_for(lambda: _refused(log, offset, lake), 180, "the speed job to fail on the read-only commit logs and restart")
            frozen = (landed(spark, stream), _last_batch(stream))
            time.sleep(5)
            assert (landed(spark, stream), _last_batch(stream)) == frozen
        wait_for(lambda: _last_batch(stream) > frozen[1], 300, "the speed job to resume after the commit logs came back")
        assert flow.is_alive(), "the flow ran out before the last phase: the resumption above proves nothing"
        flow.stop()
        wait_for(lambda: landed(spark, stream) >= stream.sent, 300, "the speed job to catch up", every=2)
    finally:
        kill_9(job)

    # The failed commits left data files no table version names: on disk, never read.
    orphans = 0
    for table in TABLES:
        read = {Path(uri.removeprefix("file:")).name for uri in DeltaTable.forPath(spark, str(lake / table)).toDF().inputFiles()}
        orphans += sum(1 for file in (lake / table).rglob("*.parquet") if file.name not in read)
    assert orphans > 0, "the read-only commit logs should have left half-written data files behind"
    run_speed(stream.settings, once=True, log=lambda m: None, max_restarts=0, handle_signals=False)
    assert_recovered(spark, stream, flow.failures)
