"""`braid topics create` and `braid generate` against the real broker, checked by reading Kafka back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from tests.braid.test_producer import consume_all

pytestmark = pytest.mark.services


def braid(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "braid.cli", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def test_topics_create_makes_the_events_and_dead_letter_topics(services) -> None:
    env = {"BRAID_EVENTS_TOPIC": "cli.events", "BRAID_DEAD_LETTER_TOPIC": "cli.dead", "BRAID_TOPIC_PARTITIONS": "5", "BRAID_TOPIC_RETENTION_HOURS": "48"}
    first = braid("topics", "create", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "topic cli.events: created (5 partitions, replication 1, retention 48 h)",
        "topic cli.dead: created (5 partitions, replication 1, retention 48 h)",
    ]
    assert "exists" in braid("topics", "create", env=env).stdout  # idempotent
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap_servers)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(["cli.events", "cli.dead"])}
        assert described == {"cli.events": 5, "cli.dead": 5}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "cli.events")])
        text = str(configs)
        assert str(48 * 3600 * 1000) in text
    finally:
        admin.close()


def test_generate_to_kafka_matches_its_report_and_manifest(services, tmp_path: Path) -> None:
    env = {"BRAID_EVENTS_TOPIC": "gen.events", "BRAID_TOPIC_PARTITIONS": "3"}
    assert braid("topics", "create", env=env).returncode == 0
    result = braid("generate", "--count", "4000", "--seed", "5", "--malformed", "0.05", "--duplicates", "0.05",
                   "--manifest", str(tmp_path), "--json", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    consumed = consume_all(services.kafka_bootstrap_servers, "gen.events")
    assert len(consumed) == report["produced"] == 4000
    # Independent account of what is in Kafka: which records parse as events, and how many distinct ids.
    valid_ids = []
    for record in consumed:
        try:
            event = msgspec.json.decode(record.value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict) and event.get("event_type") in ("payment", "page_view") and event.get("schema_version") in (1, 2) \
                and isinstance(event.get("payload"), dict) and isinstance(event["payload"].get("user_id"), str):
            valid_ids.append(event["event_id"])
    manifest_ids = [json.loads(line)["event_id"] for part in tmp_path.glob("events-*.jsonl") for line in part.read_text().splitlines()]
    assert len(manifest_ids) == len(set(manifest_ids)) == report["valid_unique"]
    assert set(manifest_ids) <= set(valid_ids)
    assert report["valid_raw"] + report["quarantine_expected"] == 4000
    assert report["categories"]["duplicate"] == sum(n - 1 for n in Counter(valid_ids).values() if n > 1)


def test_generate_refuses_duration_without_rate() -> None:
    result = braid("generate", "--duration", "10", "--dry-run")
    assert (result.returncode, result.stderr.strip()) == (2, "braid: generate: --duration needs --rate (events/s)")


def test_schemas_check_passes_on_the_shipped_contracts() -> None:
    result = braid("schemas", "check")
    assert result.returncode == 0 and result.stdout.startswith("schemas: ok: page_view v1/v2, payment v1; 4 views")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["topics", "create"], {"BRAID_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "braid: kafka: no broker answers at 127.0.0.1:1 (start one with 'braid up')"),
        (["migrate"], {"BRAID_CASSANDRA_PORT": "1"}, "braid: cassandra: no node answers at 127.0.0.1:1 (start one with 'braid up')"),
    ],
)
def test_an_unreachable_service_is_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    result = braid(*args, env=env)
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (2, message)
    assert "Traceback" not in result.stderr
