"""The bad-input corpus end to end, on real Kafka, Spark/Delta and Cassandra. One copy of the corpus is produced as
raw bytes straight to the topic, one through the producer library (validating), one through the HTTP ingest endpoint
wired to a real producer; then the speed layer runs once. Every bad record is in quarantine with its exact reason and
its raw bytes, every valid event is in the master dataset with every value as sent, the speed views equal an
independent aggregation of the first copies, and produced = master + quarantine, by count and by Kafka coordinates."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from fastapi.testclient import TestClient

from braid.cassandra import cluster_from_settings, replication_map
from braid.ingest import create_app
from braid.kafka import create_topic
from braid.layout import view_key_text
from braid.migrations import load_migrations, migrate
from braid.producer import EventProducer
from braid.settings import load_settings
from schemas.contracts import default_contracts, rules
from schemas.validation import Validator
from schemas.views import default_views
from tests.braid.test_ingest_corpus import body_of
from tests.braid.test_producer import consume_all
from tests.corpus.bad_events import KEY, VALID, Case, corpus
from tests.speed.oracle import expected_views, merged_speed_rows

pytestmark = [pytest.mark.services, pytest.mark.spark]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _readable(case: Case) -> bool:
    try:
        msgspec.json.decode(case.raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


def _micros(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def _as_stored(event: dict) -> tuple:
    """What the master dataset must hold for an event: its envelope, time to the microsecond, payload without nulls."""
    payload = {name: value for name, value in event["payload"].items() if value is not None}
    envelope = (event["event_id"], event["event_type"], event["schema_version"], event["source"])
    return (*envelope, _micros(event["event_time"]), json.dumps(payload, sort_keys=True))


@pytest.fixture()
def pipeline(services, tmp_path: Path):
    name = f"corpus{uuid.uuid4().hex[:8]}"
    create_topic(services.kafka_bootstrap_servers, name, partitions=3, replication=1)
    settings = load_settings(
        events_topic=name,
        cassandra_keyspace=name,
        delta_root=str(tmp_path / "lake"),
        checkpoint_root=str(tmp_path / "checkpoints"),
        speed_max_offsets_per_trigger=100_000,
        speed_trigger_seconds=1.0,
        speed_dead_letter=False,
    )
    cluster = cluster_from_settings(settings)
    migrate(cluster.connect(), name, replication_map("SimpleStrategy", 1, "dc"), load_migrations())
    cluster.shutdown()
    return settings


def test_the_corpus_lands_exactly_in_quarantine_and_the_master_dataset(spark, pipeline) -> None:
    from speed.main import run_speed

    settings, topic, bootstrap = pipeline, pipeline.events_topic, pipeline.kafka_bootstrap_servers
    registry = default_contracts()
    validator = Validator(registry, rules())
    now = datetime.now(UTC)
    raw_cases, library_cases, http_cases = corpus(now, tag="raw"), corpus(now, tag="lib"), corpus(now, tag="http")

    # 1. The bytes as they are, one key: one partition, in corpus order.
    with EventProducer(bootstrap, topic, registry=registry, validator=None) as producer:
        futures = [producer.send_raw(KEY, case.raw) for case in raw_cases]
        producer.flush()
        assert all(future.get(timeout=30) for future in futures)
    # 2. The producer library: bad events refused with their reason, nothing sent for them.
    readable = [case for case in library_cases if _readable(case)]
    with EventProducer(bootstrap, topic, registry=registry, validator=validator) as producer:
        report = producer.send_many([msgspec.json.decode(case.raw) for case in readable])
    library_sent = [case for case in readable if case.as_event_expected == VALID]
    assert report.sent == len(library_sent) and report.failed == []
    assert [(i, r.reason) for i, r in report.rejected] == [(i, c.as_event_expected) for i, c in enumerate(readable) if c.as_event_expected != VALID]
    # 3. The HTTP endpoint as `braid ingest` wires it: the endpoint validates, its producer trusts it.
    producer = EventProducer(bootstrap, topic, registry=registry, validator=None)
    app = create_app(producer, validator, max_batch=50, max_event_bytes=rules().max_event_bytes)
    with TestClient(app) as client:
        for case in http_cases:
            answer = client.post("/v1/events", content=body_of(case), headers={"content-type": "application/json"})
            expected_status = {200} if case.as_event_expected == VALID else {400, 413, 422}
            assert answer.status_code in expected_status, (case.name, answer.text[:300])
    producer.close()
    http_sent = [case for case in http_cases if case.as_event_expected == VALID]

    run_speed(settings, once=True, log=lambda message: None, max_restarts=0, handle_signals=False)

    lake = settings.lake_root
    quarantine = spark.read.format("delta").load(f"{lake}/quarantine").where(f"topic = '{topic}'")
    assert Counter((bytes(row.raw), row.reason) for row in quarantine.select("raw", "reason").collect()) == Counter(
        (case.raw, case.expected) for case in raw_cases if case.expected != VALID
    )  # the raw copy's bad records, byte for byte with their exact reason; the other two paths sent none

    from pyspark.sql import functions as F

    master_frames = [spark.read.format("delta").load(f"{lake}/master/{event_type}") for event_type in registry]
    stored = [
        row
        for frame in master_frames
        for row in frame.select(
            "event_id", "event_type", "schema_version", "source", F.unix_micros("event_time").alias("micros"),
            F.to_json("payload").alias("payload"), "kafka_partition", "kafka_offset",
        ).collect()
    ]  # fmt: skip
    valid = [json.loads(case.raw) for case in raw_cases if case.expected == VALID]
    valid += [json.loads(case.raw) for case in library_sent + http_sent]
    in_master = Counter(
        (row.event_id, row.event_type, row.schema_version, row.source, row.micros, json.dumps(json.loads(row.payload), sort_keys=True))
        for row in stored
    )
    assert in_master == Counter(_as_stored(event) for event in valid)  # every valid copy, every value as sent (CQL text too)

    produced = consume_all(bootstrap, topic)
    assert len(produced) == len(raw_cases) + len(library_sent) + len(http_sent)
    quarantined = [(row.kafka_partition, row.kafka_offset) for row in quarantine.select("kafka_partition", "kafka_offset").collect()]
    coordinates = quarantined + [(row.kafka_partition, row.kafka_offset) for row in stored]
    assert len(coordinates) == len(set(coordinates)) == len(produced)  # produced = master + quarantine, nothing twice
    assert set(coordinates) == {(record.partition, record.offset) for record in produced}

    first_copies = list({event["event_id"]: event for event in reversed(valid)}.values())  # the first copy of each id
    cluster = cluster_from_settings(settings)
    try:
        rows = list(cluster.connect(settings.cassandra_keyspace).execute("SELECT * FROM speed_views"))
    finally:
        cluster.shutdown()
    assert merged_speed_rows(rows, default_views()) == expected_views(first_copies, default_views())
    assert [row.key for row in rows if view_key_text(json.loads(row.key)) != row.key] == []  # serving finds every key
