"""The speed layer on the secured stack (tests/secured_stack.py): Spark's Kafka source and the job's own Kafka clients
sign in with SCRAM from the settings, the job writes Cassandra as the owner role, and the serving layer reads the result
as the read-only role; the views equal an independent account of the generated stream, and neither the job nor
Spark prints a secret."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from braid.cassandra import cluster_from_settings, replication_map
from braid.cassandra_roles import grant_reads
from braid.generator import EventGenerator, GeneratorConfig
from braid.kafka import create_topic
from braid.migrations import load_migrations, migrate
from braid.producer import EventProducer
from braid.settings import load_settings
from schemas.contracts import default_contracts
from schemas.views import default_views
from serving.main import open_queries
from serving.store import READ_TABLES
from tests.secured_stack import SecuredStack, secured_overrides
from tests.speed.oracle import expected_views, merged_speed_rows

pytestmark = [pytest.mark.services, pytest.mark.spark]


def test_the_speed_layer_reads_kafka_with_sasl_and_serves_through_the_reader(
    spark, secured_stack: SecuredStack, braid_env: dict[str, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from speed.main import run_speed

    name = f"sasl{uuid.uuid4().hex[:8]}"
    settings = load_settings(**secured_overrides(braid_env) | {
        "events_topic": name, "cassandra_keyspace": name, "delta_root": str(tmp_path / "lake"),
        "checkpoint_root": str(tmp_path / "checkpoints"), "speed_trigger_seconds": 1.0,
    })  # fmt: skip
    security = secured_stack.security
    create_topic(settings.kafka_bootstrap_servers, name, partitions=3, replication=1, security=security)
    cluster = cluster_from_settings(settings)  # the owner: creates the keyspace, so owns it, and grants the reader
    try:
        session = cluster.connect()
        migrate(session, name, replication_map("SimpleStrategy", 1, "datacenter1"), load_migrations())
        grant_reads(session, name, "braid_reader", READ_TABLES)
    finally:
        cluster.shutdown()
    config = GeneratorConfig(seed=41, count=1500, start=datetime.now(UTC), late_fraction=0, duplicate_fraction=0.05, malformed_fraction=0.04)
    records = list(EventGenerator(config).records())
    with EventProducer(settings.kafka_bootstrap_servers, name, registry=default_contracts(), validator=None, **security.client_config()) as producer:
        for record in records:
            producer.send_raw(record.key, record.value)
        producer.flush(timeout=60)

    log: list[str] = []
    run_speed(settings, once=True, log=log.append, max_restarts=0, handle_signals=False)
    printed = "".join(capfd.readouterr()) + "\n".join(log)  # the job's lines, and what Spark's JVM wrote meanwhile
    assert log and [secret for secret in secured_stack.secrets if secret in printed] == []

    views = default_views()
    distinct = list({r.event["event_id"]: r.event for r in records if r.event is not None}.values())
    expected = expected_views(distinct, views)
    cluster = cluster_from_settings(settings)
    try:
        rows = list(cluster.connect(name).execute("SELECT * FROM speed_views"))
    finally:
        cluster.shutdown()
    assert merged_speed_rows(rows, views) == expected

    view = views["page_views_by_country"]
    per_country: dict[str, int] = defaultdict(int)
    for (view_name, key, _), metrics in expected.items():
        if view_name == view.name:
            per_country[key] += metrics["views"]
    with open_queries(settings) as queries:  # the reader role
        answer = queries.top(view.name, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=10), n=1000, metric="views")
    assert {json.dumps(e.key, separators=(",", ":"), ensure_ascii=False): e.value for e in answer.entries} == dict(per_country)
