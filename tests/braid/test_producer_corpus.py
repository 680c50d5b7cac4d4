"""The producer library on bad input, with kafka-python's producer replaced by a recorder: a validating producer
refuses every bad case with its exact reason and sends nothing for it, sends each valid event as it came, keyed by its
entity; the trusted path and `send_raw` never choke on what they are given. Pure: no Kafka."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

import braid.producer
from braid.producer import EventProducer, event_key
from schemas.contracts import default_contracts, rules
from schemas.validation import InvalidEvent, Validator
from tests.corpus.bad_events import VALID, Case, corpus

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CASES = corpus(NOW)


def _decoded(case: Case):
    return msgspec.json.decode(case.raw)


def _readable(case: Case) -> bool:
    try:
        _decoded(case)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


# EventProducer.send takes decoded events: the cases that decode (the others are bytes only, for send_raw).
EVENT_CASES = [case for case in CASES if _readable(case)]


class _Acknowledged:
    def get(self, timeout: float | None = None) -> None:
        return None


class RecordingKafkaProducer:
    """Stands in for kafka.KafkaProducer: keeps every send as (topic, key, value)."""

    def __init__(self, **config) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> _Acknowledged:
        self.sent.append((topic, key, value))
        return _Acknowledged()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


@pytest.fixture()
def producer(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(braid.producer, "KafkaProducer", RecordingKafkaProducer)
    registry = default_contracts()
    return EventProducer(["unused:9092"], "events", registry=registry, validator=Validator(registry, rules()), clock=lambda: NOW)


@pytest.fixture()
def trusted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(braid.producer, "KafkaProducer", RecordingKafkaProducer)
    return EventProducer(["unused:9092"], "events", registry=default_contracts(), validator=None)


def _entity(event: dict) -> bytes:
    contract = default_contracts()[event["event_type"]][event["schema_version"]]
    return event["payload"][contract.key].encode()


def test_the_producer_is_durable_by_configuration(producer: EventProducer) -> None:
    config = producer._producer.config
    assert (config["acks"], config["enable_idempotence"]) == ("all", True)


@pytest.mark.parametrize("case", EVENT_CASES, ids=[case.name for case in EVENT_CASES])
def test_send_refuses_each_bad_event_with_its_reason_and_sends_each_good_one_as_it_came(producer: EventProducer, case: Case) -> None:
    event = _decoded(case)
    if case.as_event_expected == VALID:
        producer.send(event)
        [(topic, key, value)] = producer._producer.sent
        expected = json.loads(case.raw.decode("utf-8"))
        assert (topic, key, json.loads(value)) == ("events", _entity(expected), expected)
    else:
        with pytest.raises(InvalidEvent, match=f"^{case.as_event_expected}: ") as refused:
            producer.send(event)
        assert refused.value.rejection.reason == case.as_event_expected
        assert producer._producer.sent == []


def test_send_many_accounts_for_every_event(producer: EventProducer) -> None:
    report = producer.send_many([_decoded(case) for case in EVENT_CASES])
    valid = [case for case in EVENT_CASES if case.as_event_expected == VALID]
    assert report.sent == len(valid) == len(producer._producer.sent) and report.failed == []
    assert [(index, rejection.reason) for index, rejection in report.rejected] == [
        (index, case.as_event_expected) for index, case in enumerate(EVENT_CASES) if case.as_event_expected != VALID
    ]
    assert [json.loads(value) for _, _, value in producer._producer.sent] == [json.loads(case.raw.decode("utf-8")) for case in valid]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("user_id", "user-\ud800", "not_utf8"), ("amount", object(), "wrong_type")],
    ids=["a lone surrogate: a Python str UTF-8 cannot carry", "not JSON at all"],
)
def test_python_values_json_cannot_carry_are_refused_not_send_failures(producer: EventProducer, field: str, value, reason: str) -> None:
    event = json.loads(next(case for case in CASES if case.name == "payment v1, every field").raw)
    event["payload"][field] = value
    with pytest.raises(InvalidEvent, match=f"^{reason}: "):
        producer.send(event)
    report = producer.send_many([event])
    assert (report.sent, [r.reason for _, r in report.rejected], report.failed) == (0, [reason], [])
    assert producer._producer.sent == []


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_send_raw_sends_the_bytes_unchanged(trusted: EventProducer, case: Case) -> None:
    trusted.send_raw(b"k", case.raw)
    assert trusted._producer.sent == [("events", b"k", case.raw)]


@pytest.mark.parametrize("case", EVENT_CASES, ids=[case.name for case in EVENT_CASES])
def test_the_trusted_path_sends_whatever_it_is_given_without_choking(trusted: EventProducer, case: Case) -> None:
    event = _decoded(case)
    report = trusted.send_many([event])
    assert (report.sent, report.rejected, report.failed) == (1, [], [])
    [(_, _, value)] = trusted._producer.sent
    assert json.loads(value) == json.loads(case.raw.decode("utf-8"))


@pytest.mark.parametrize(
    ("event", "key"),
    [
        ({"event_id": "e-1", "event_type": "payment", "schema_version": 1, "payload": {"user_id": "u-1"}}, b"u-1"),
        ({"event_id": "e-1", "event_type": "payment", "schema_version": 1, "payload": {"user_id": 7}}, b"e-1"),
        ({"event_id": "e-1", "event_type": "payment", "schema_version": 1, "payload": [1]}, b"e-1"),
        ({"event_id": "e-1", "event_type": "payment", "schema_version": "1", "payload": {"user_id": "u-1"}}, b"e-1"),
        ({"event_id": "e-1", "event_type": ["payment"], "schema_version": 1}, b"e-1"),
        ({"event_id": "e-1", "event_type": "refund", "schema_version": 1, "payload": {"user_id": "u-1"}}, b"e-1"),
        ({"event_type": "refund"}, b""),
        ([{"event_id": "e-1"}], b""),
        ("payment", b""),
        (None, b""),
    ],
    ids=["entity", "entity not a string", "payload a list", "version a string", "type a list", "unknown type", "no id", "a list", "a string", "null"],
)
def test_event_key_is_the_entity_else_the_event_id_else_empty(event, key: bytes) -> None:
    assert event_key(event, default_contracts()) == key
