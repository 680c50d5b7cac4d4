"""The bad-input corpus through the HTTP ingest endpoint, with a stub producer that records what it is handed: every
bad case is a 4xx with its exact reason and nothing is sent for it, every valid case is sent as it came, nothing is a
500. Pure: no Kafka (tests/speed/test_bad_input.py sends the same corpus through a real producer)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest
from fastapi.testclient import TestClient

from braid.ingest import create_app
from schemas.contracts import default_contracts, rules
from schemas.validation import Validator
from tests.corpus.bad_events import VALID, Case, corpus

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CASES = corpus(NOW)
MAX_BATCH = 200


class _Acknowledged:
    def get(self, timeout: float | None = None) -> None:
        return None


class StubProducer:
    """What the endpoint needs of an EventProducer: `send` (here: recorded and acknowledged at once) and `flush`."""

    def __init__(self) -> None:
        self.sent: list = []

    def send(self, event) -> _Acknowledged:
        self.sent.append(event)
        return _Acknowledged()

    def flush(self, timeout: float | None = None) -> None:
        return None


@pytest.fixture()
def stub() -> StubProducer:
    return StubProducer()


@pytest.fixture()
def client(stub: StubProducer):
    app = create_app(stub, Validator(default_contracts(), rules()), max_batch=MAX_BATCH, max_event_bytes=rules().max_event_bytes, clock=lambda: NOW)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def body_of(case: Case) -> bytes:
    """The case as a batch of one; an empty record cannot be an element of a batch, so it is the whole body."""
    return case.raw if "empty" in case.tags else b"[" + case.raw + b"]"


def _post(client: TestClient, body: bytes):
    return client.post("/v1/events", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_alone(client: TestClient, stub: StubProducer, case: Case) -> None:
    answer = _post(client, body_of(case))
    body = answer.json()
    if case.as_event_expected == VALID:
        assert answer.status_code == 200, body
        assert stub.sent == [json.loads(case.raw.decode("utf-8"))]
        return
    assert stub.sent == []
    if answer.status_code == 422:  # the batch was read: the event's own result says why
        assert (body["accepted"], body["rejected"], body["failed"]) == (0, 1, 0)
        assert body["results"][0]["reason"] == case.as_event_expected, body["results"][0]["detail"]
    else:  # the body failed as a whole, as the event would have
        assert answer.status_code in (400, 413), body
        assert body["reason"] == case.as_event_expected, body["error"]


def _readable(case: Case) -> bool:
    """Whether the case can be an element of a JSON batch (what the endpoint answers per event)."""
    try:
        msgspec.json.decode(case.raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


def test_the_whole_corpus_in_one_batch_answers_per_event_in_order(client: TestClient, stub: StubProducer) -> None:
    cases = [case for case in CASES if _readable(case)]
    assert len(cases) > 100
    answer = _post(client, b"[" + b",".join(case.raw for case in cases) + b"]")
    assert answer.status_code == 422
    results = answer.json()["results"]
    assert [(r["index"], r["status"], r.get("reason")) for r in results] == [
        (index, "accepted", None) if case.as_event_expected == VALID else (index, "rejected", case.as_event_expected)
        for index, case in enumerate(cases)
    ]
    assert stub.sent == [json.loads(case.raw.decode("utf-8")) for case in cases if case.as_event_expected == VALID]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b" " * (MAX_BATCH * rules().max_event_bytes + 1), 413, "oversized"),
        (b'[{"a": "caf\xc3"}]', 400, "not_utf8"),  # invalid UTF-8 inside a string: a UnicodeDecodeError, once a 500
        (b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "unparseable"),  # a RecursionError, once a 500
    ],
    ids=["over the batch limit", "not UTF-8 inside a string", "nested too deeply"],
)
def test_a_body_that_fails_as_a_whole_carries_the_reason(client: TestClient, stub: StubProducer, body: bytes, status: int, reason: str) -> None:
    answer = _post(client, body)
    assert (answer.status_code, answer.json()["reason"]) == (status, reason)
    assert stub.sent == []
