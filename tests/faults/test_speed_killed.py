"""The speed job killed with SIGKILL at random moments, several times in one run while events flow, and restarted
each time: once it has caught up, nothing is lost and nothing is counted twice (tests/faults/recovery.py)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.faults.recovery import Flow, assert_recovered, kill_9, landed, speed_process, wait_for
from tests.speed.test_speed_job import Stream

pytestmark = [pytest.mark.faults, pytest.mark.services, pytest.mark.spark]

# The kill moments come from a seed taken from a fixed list, so that every CI run replays a known case; the seed is
# printed, and BRAID_FAULT_SEED=<seed> replays one (any integer, on or off the list).
FAULT_SEEDS = (20261101, 7, 4242, 90017, 313)
SEED = int(os.environ.get("BRAID_FAULT_SEED") or random.choice(FAULT_SEEDS))


def _last_batch(stream: Stream) -> int:
    progress = stream.progress()
    return -1 if progress is None else progress.last_batch


def test_speed_killed_at_random_moments_then_restarted(spark, services, tmp_path: Path) -> None:
    from speed.main import run_speed

    rng = random.Random(SEED)
    print(f"BRAID_FAULT_SEED={SEED}")
    stream = Stream(services, tmp_path, seed=71, count=3600, max_offsets=1000)
    flow = Flow(stream, rate=40)  # 90 s of events: many handoff buckets, batches running back to back
    log = tmp_path / "speed.log"
    flow.start()
    job = speed_process(stream, log)
    kills = []
    try:
        # The first kill lands anywhere from the JVM's start to its first archived batches (a new job archives its
        # first about 20 s after it starts); the next ones a random moment after the restarted job committed a batch.
        time.sleep(rng.uniform(5, 30))
        kills.append(_last_batch(stream))
        kill_9(job)
        for _ in range(2):
            job = speed_process(stream, log)
            before = _last_batch(stream)
            wait_for(lambda: _last_batch(stream) > before, 240, "a batch committed by the restarted job")
            time.sleep(rng.uniform(0, 6))
            kills.append(_last_batch(stream))
            kill_9(job)
        job = speed_process(stream, log)
        flow.finish()
        total = stream.sent
        wait_for(lambda: landed(spark, stream) >= total, 300, "the restarted job to catch up", every=2)
    finally:
        kill_9(job)
    assert len(kills) == 3 and kills[-1] > kills[0]  # the job made progress between the kills
    run_speed(stream.settings, once=True, log=lambda m: None, max_restarts=0, handle_signals=False)  # marks buckets complete
    sources = assert_recovered(spark, stream, flow.failures)
    assert sources & {"batch", "both"} and sources & {"speed", "both"}  # the merge had both sides

