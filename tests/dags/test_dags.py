"""The DAG files import cleanly, with the task graph, schedule and run policy the batch layer relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"

# Airflow reads its configuration at import: load the DAGs in a process of their own, with their own AIRFLOW_HOME.
_LOAD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {path: str(error) for path, error in bag.import_errors.items()},
    "dags": {
        dag_id: {
            "schedule": str(dag.schedule),
            "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup,
            "edges": {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks},
            "retries": {task.task_id: task.retries for task in dag.tasks},
            "retry_delays": {task.task_id: task.retry_delay.total_seconds() for task in dag.tasks},
            "params": sorted(dag.params.keys()),
        }
        for dag_id, dag in bag.dags.items()
    },
}))
"""


def load(tmp_path: Path, extra_env: dict[str, str] | None = None) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **(extra_env or {})}
    done = subprocess.run([sys.executable, "-c", _LOAD, str(DAGS)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dags_import_with_the_expected_task_graph(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded["errors"] == {}
    batch = loaded["dags"]["braid_batch"]
    assert batch["edges"] == {
        "pick_cutoff": ["validate_snapshot"],
        "validate_snapshot": ["recompute"],
        "recompute": ["validate_views"],
        "validate_views": ["publish"],
        "publish": ["retire"],
        "retire": [],
    }
    assert batch["max_active_runs"] == 1 and batch["catchup"] is False
    assert set(batch["retries"].values()) == {2}
    assert batch["params"] == ["cutoff", "incremental"]
    assert batch["schedule"] == "@hourly"  # the default of the batch_schedule setting
    maintenance = loaded["dags"]["braid_maintenance"]
    assert maintenance["edges"] == {
        "compact_and_vacuum": ["retire_versions"],
        "retire_versions": ["retire_speed_buckets"],
        "retire_speed_buckets": [],
    }
    assert maintenance["max_active_runs"] == 1 and maintenance["catchup"] is False


def test_the_schedule_and_the_retry_delay_come_from_the_settings(tmp_path: Path) -> None:
    loaded = load(tmp_path, {"BRAID_BATCH_SCHEDULE": "*/15 * * * *", "BRAID_BATCH_RETRY_DELAY_SECONDS": "7"})
    assert loaded["dags"]["braid_batch"]["schedule"] == "*/15 * * * *"
    assert set(loaded["dags"]["braid_batch"]["retry_delays"].values()) == {7.0}


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_a_dag_file_does_no_io_at_import(path: Path) -> None:
    # Module-level imports are only Airflow's and the settings; Spark, Cassandra and the jobs load inside tasks.
    import ast

    tree = ast.parse(path.read_text())
    modules = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert modules <= {"__future__", "datetime", "airflow.sdk", "braid.settings"}
