"""The batch layer on a schedule: pick cutoff -> validate snapshot -> recompute -> validate views -> publish -> retire.

Only wiring here (STYLE.md, rule 10): nothing is read or connected at import time beyond the settings' schedule.
Each task is bound to this DAG run's version (`airflow-<run id>`): a retried task, or the whole run cleared and run
again, continues the same version and never publishes twice. Spark stages are `spark-submit`s aimed at the master
the settings name (`BRAID_SPARK_MASTER`), so the same DAG drives `local[*]` or a cluster.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from braid.settings import load_settings

RETRIES = {
    "retries": 2,
    "retry_delay": timedelta(seconds=load_settings().batch_retry_delay_seconds),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


def _submit_stage(stage: str, version: dict) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from batch.submit import QualityGateRefused, submit

    try:
        submit(load_settings(), ["stage", stage, "--run-id", version["run_id"]])
    except QualityGateRefused as refused:
        raise AirflowFailException(str(refused)) from None  # the same data fails the same way: no retry
    return version


@dag(
    dag_id="braid_batch",
    description="Exact views recomputed from the master dataset, checked, and published atomically",
    schedule=load_settings().batch_schedule,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    params={
        "cutoff": Param(None, type=["null", "integer"], minimum=0, description="last handoff bucket (default: newest complete)"),
        "incremental": Param(False, type="boolean", description="recompute only the windows touched since the served version"),
    },
    tags=["braid"],
)
def braid_batch():
    @task
    def pick_cutoff(params=None, run_id=None) -> dict:
        from batch.job import batch_context
        from batch.stages import FULL, INCREMENTAL, pick_cutoff

        with batch_context(load_settings()) as context:
            record = pick_cutoff(context, f"airflow-{run_id}", params["cutoff"], INCREMENTAL if params["incremental"] else FULL)
        return {"run_id": record.run_id, "version": record.version, "cutoff": record.cutoff}

    @task
    def validate_snapshot(version: dict) -> dict:
        return _submit_stage("validate-snapshot", version)

    @task
    def recompute(version: dict) -> dict:
        return _submit_stage("recompute", version)

    @task
    def validate_views(version: dict) -> dict:
        return _submit_stage("validate-views", version)

    @task
    def publish(version: dict) -> dict:
        return _submit_stage("publish", version)

    @task
    def retire(version: dict) -> int:
        from batch.job import batch_context
        from batch.stages import retire

        with batch_context(load_settings()) as context:
            return retire(context)

    retire(publish(validate_views(recompute(validate_snapshot(pick_cutoff())))))


braid_batch()
