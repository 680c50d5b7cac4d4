"""Daily upkeep of the batch layer: Delta OPTIMIZE and VACUUM (retention from settings, never under 7 days) of the
master dataset, quarantine and view tables, then deletion of superseded batch versions and retired speed buckets
no reader can still need. Safe to rerun: compaction, vacuum and the deletes are idempotent."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from braid.settings import load_settings


@dag(
    dag_id="braid_maintenance",
    description="Delta compaction and VACUUM; retirement of superseded batch versions and covered speed buckets",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": 2.0},
    tags=["braid"],
)
def braid_maintenance():
    @task
    def compact_and_vacuum() -> None:
        from batch.submit import submit

        submit(load_settings(), ["compact"])

    @task
    def retire_versions() -> None:
        from batch.submit import submit

        submit(load_settings(), ["retire-versions"])

    @task
    def retire_speed_buckets() -> int:
        from batch.job import batch_context
        from batch.stages import retire

        with batch_context(load_settings()) as context:
            return retire(context)

    compact_and_vacuum() >> retire_versions() >> retire_speed_buckets()


braid_maintenance()
