"""`braid demo` end to end on the test stack: services, speed job, an Airflow DAG run, the API, and its own check of
the merged answers against the generator's records, which must pass."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from braid.services import background

pytestmark = [pytest.mark.services, pytest.mark.spark]


def test_the_demo_runs_the_whole_platform_and_its_answers_check_out(services) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The packaged rules, not the test stack's 2 s buckets: the one run of production's 60 s handoff buckets end to end.
    env = {**{k: v for k, v in os.environ.items() if k != "BRAID_RULES_FILE"}, "BRAID_SERVING_PORT": str(port)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "braid.cli", "demo", "--minutes", "1.5", "--rate", "200"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = demo.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, signal.SIGKILL)  # the demo and the Airflow run under it
        out, err = demo.communicate()
        pytest.fail(f"braid demo did not end in 1500 s:\n{(out + err)[-4000:]}")
    finally:
        # the background speed job has a session of its own; one left by a failed demo would slow the rest of the suite
        background.stop_speed(services)
    assert demo.returncode == 0, (out + err)[-4000:]
    assert f"demo: dashboard and API at http://127.0.0.1:{port}/" in out
    assert re.search(r"demo: Airflow ran braid_batch: version 1 published, cutoff bucket \d+, [1-9]\d* events", out), out[-6000:]
    produced = re.findall(r"demo: produced ([\d,]+); ingested ([\d,]+) valid; quarantined ([\d,]+)", out)[-1]
    produced, valid, quarantined = (int(x.replace(",", "")) for x in produced)
    assert produced == 18_000 and valid + quarantined == produced and quarantined > 0  # nothing lost
    assert "(batch)" in out or "(both)" in out  # the merged answers use the published version
    assert re.search(r"demo: check: the merged answers of all 4 views \(\d+ keys\) equal an independent aggregation", out)
    from braid.services import local

    assert all(state.up for state in local.status(services))  # the demo leaves services it did not start running
