"""The main job on the test stack: counts agree across Kafka, Delta and Cassandra, checked independently."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.services, pytest.mark.spark]


def test_smoke_pipeline_counts_agree_with_what_was_produced(spark, services, cassandra_session) -> None:
    from pyspark.sql import functions as F

    from braid.smoke import run_smoke

    lines: list[str] = []
    result = run_smoke(services, events=420, log=lines.append)
    assert (result.produced, result.rows_in_delta, result.count_in_cassandra) == (420, 420, 420)

    # Independent reads of what the job wrote: the Delta table and the Cassandra row.
    events = spark.read.format("delta").load(f"{services.lake_root}/smoke/events").where(F.col("run_id") == result.run_id)
    assert sorted(row.sequence for row in events.select("sequence").collect()) == list(range(420))
    row = cassandra_session.execute("SELECT produced, rows_in_delta FROM smoke_runs WHERE run_id = %s", (result.run_id,)).one()
    assert (row.produced, row.rows_in_delta) == (420, 420)
    assert any(line.startswith("smoke: OK") for line in lines)


def test_cli_rejects_a_bad_event_count_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "braid.cli", "smoke", "--events", "zero"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "argument --events: expected a whole number, got 'zero'" in result.stderr


def test_smoke_survives_a_reset_topic_with_old_checkpoints_around(spark, services) -> None:
    """A broker whose topic was deleted and recreated must not make the next run read nothing from an old checkpoint."""
    import time

    from kafka import KafkaAdminClient

    from braid.smoke import TOPIC, run_smoke

    first = run_smoke(services, events=50, log=lambda message: None)
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap_servers)
    try:
        admin.delete_topics([TOPIC])
        for _ in range(50):
            if TOPIC not in admin.list_topics():
                break
            time.sleep(0.2)
    finally:
        admin.close()
    second = run_smoke(services, events=60, log=lambda message: None)
    assert (first.rows_in_delta, second.produced, second.rows_in_delta, second.count_in_cassandra) == (50, 60, 60, 60)
