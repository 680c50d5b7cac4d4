"""The HTTP ingest endpoint: accepted events are in Kafka when it answers; every rejection comes with its reason."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from fastapi.testclient import TestClient

from braid.generator import EventGenerator, GeneratorConfig
from braid.ingest import create_app
from braid.kafka import create_topic
from braid.producer import EventProducer
from schemas.contracts import default_contracts, rules
from schemas.validation import Validator
from tests.braid.test_producer import consume_all

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def topic(services) -> str:
    name = f"ingest-{uuid.uuid4().hex[:8]}"
    create_topic(services.kafka_bootstrap_servers, name, partitions=2, replication=1)
    return name


@pytest.fixture(scope="module")
def client(services, topic):
    registry = default_contracts()
    producer = EventProducer(services.kafka_bootstrap_servers, topic, registry=registry, validator=None)
    app = create_app(producer, Validator(registry, rules()), max_batch=50, max_event_bytes=rules().max_event_bytes)
    with TestClient(app) as test_client:
        yield test_client
    producer.close()


def _events(count: int, seed: int) -> list[dict]:
    config = GeneratorConfig(seed=seed, count=count, start=datetime.now(UTC), malformed_fraction=0, duplicate_fraction=0)
    return [record.event for record in EventGenerator(config).records()]


def _in_kafka(services, topic: str) -> set[str]:
    return {msgspec.json.decode(record.value)["event_id"] for record in consume_all(services.kafka_bootstrap_servers, topic)}


def test_health(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_a_valid_batch_is_in_kafka_when_the_answer_returns(client, services, topic) -> None:
    events = _events(20, seed=101)
    answer = client.post("/v1/events", json=events)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["accepted"], body["rejected"], body["failed"]) == (20, 0, 0)
    assert [r["event_id"] for r in body["results"]] == [e["event_id"] for e in events]
    assert {e["event_id"] for e in events} <= _in_kafka(services, topic)


def test_a_mixed_batch_says_which_and_why(client, services, topic) -> None:
    good = _events(3, seed=202)
    missing = copy.deepcopy(good[0]) | {"event_id": "bad-missing"}
    del missing["payload"]["user_id"]
    unknown = copy.deepcopy(good[1]) | {"event_id": "bad-type", "event_type": "refund"}
    huge = copy.deepcopy(good[2]) | {"event_id": "bad-huge", "source": "s" * 70_000}
    answer = client.post("/v1/events", json={"events": [good[0], missing, good[1], unknown, 17, huge, good[2]]})
    assert answer.status_code == 422
    results = answer.json()["results"]
    assert [(r["index"], r["status"], r.get("reason")) for r in results] == [
        (0, "accepted", None), (1, "rejected", "missing_field"), (2, "accepted", None), (3, "rejected", "unknown_event_type"),
        (4, "rejected", "not_an_object"), (5, "rejected", "oversized"), (6, "accepted", None),
    ]  # fmt: skip
    assert results[1]["detail"] == "payload.user_id"
    in_kafka = _in_kafka(services, topic)
    assert {e["event_id"] for e in good} <= in_kafka
    assert not {"bad-missing", "bad-type", "bad-huge"} & in_kafka


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "body is not JSON"),
        (b'{"rows": []}', 400, "body must be a JSON array of events"),
        (b"[]", 400, "the batch is empty"),
        (msgspec.json.encode([{}] * 51), 413, "51 events in one batch; at most 50"),
    ],
)
def test_bad_bodies_get_a_4xx_with_the_reason(client, body: bytes, status: int, error: str) -> None:
    answer = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert answer.json()["error"].startswith(error)


def test_kafka_not_acknowledging_is_a_503_per_event(services) -> None:
    registry = default_contracts()
    producer = EventProducer(services.kafka_bootstrap_servers, "absent-" + uuid.uuid4().hex[:6], registry=registry, validator=None, max_block_ms=1000)
    app = create_app(producer, Validator(registry, rules()), max_batch=10, max_event_bytes=rules().max_event_bytes)
    with TestClient(app) as client:
        answer = client.post("/v1/events", json=_events(2, seed=303))
    producer.close(timeout=5)
    assert answer.status_code == 503
    assert [r["status"] for r in answer.json()["results"]] == ["failed", "failed"]
    assert all(r["reason"] == "kafka_unavailable" for r in answer.json()["results"])
