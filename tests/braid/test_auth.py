"""API tokens on both HTTP APIs, without services: the ingest endpoint with a producer that records what it was given,
the serving API with a store it never needs (/v1/views reads the declarations only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from braid.auth import Access, ApiTokens
from braid.generator import EventGenerator, GeneratorConfig
from braid.ingest import create_app as create_ingest_app
from schemas.contracts import default_contracts, rules
from schemas.validation import Validator
from schemas.views import default_views
from serving.api import create_app as create_serving_app
from serving.queries import Queries

READ = "read-token-" + "r" * 32
WRITE = "write-token-" + "w" * 32
TOKENS = ApiTokens(read=SecretStr(READ), write=SecretStr(WRITE))


class Acknowledged:
    def get(self, timeout: float | None = None) -> None:
        return None


class RecordingProducer:
    """Stands in for EventProducer: acknowledges at once and keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, event: dict) -> Acknowledged:
        self.sent.append(event)
        return Acknowledged()

    def flush(self, timeout: float | None = None) -> None:
        pass


def _events(count: int) -> list[dict]:
    config = GeneratorConfig(seed=3, count=count, start=datetime.now(UTC), malformed_fraction=0, duplicate_fraction=0, late_fraction=0)
    return [record.event for record in EventGenerator(config).records()]


def _ingest(tokens: ApiTokens) -> tuple[TestClient, RecordingProducer]:
    producer = RecordingProducer()
    registry = default_contracts()
    app = create_ingest_app(producer, Validator(registry, rules()), max_batch=10, max_event_bytes=rules().max_event_bytes, tokens=tokens)  # type: ignore[arg-type]
    return TestClient(app), producer


def _serving(tokens: ApiTokens) -> TestClient:
    queries = Queries(store=None, views=default_views(), rules=rules())  # type: ignore[arg-type]
    return TestClient(create_serving_app(queries, tokens=tokens, pipeline=lambda: {}))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {READ}", Access.READ),
        (f"Bearer {WRITE}", Access.WRITE),
        (f"bearer {WRITE}", Access.WRITE),  # the scheme is case-insensitive (RFC 7235)
        (f"Bearer  {READ} ", Access.READ),
        (f"Bearer {READ[:-1]}", None),  # a prefix of a token is no token
        (f"Bearer {READ}x", None),
        (f"Basic {READ}", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_a_header_grants_the_access_of_the_token_it_carries(header: str | None, expected: Access | None) -> None:
    assert TOKENS.access(header) == expected


def test_with_only_a_write_token_reads_need_it_too() -> None:
    tokens = ApiTokens(write=SecretStr(WRITE))
    assert (tokens.access(f"Bearer {WRITE}"), tokens.access(f"Bearer {READ}")) == (Access.WRITE, None)
    client = _serving(tokens)
    assert [client.get("/v1/views", headers=headers).status_code for headers in ({}, _bearer(READ), _bearer(WRITE))] == [401, 401, 200]


def test_without_tokens_both_apis_stay_open() -> None:
    ingest, producer = _ingest(ApiTokens())
    events = _events(3)
    assert ingest.post("/v1/events", json=events).status_code == 200
    assert [event["event_id"] for event in producer.sent] == [event["event_id"] for event in events]
    assert [view["name"] for view in _serving(ApiTokens()).get("/v1/views").json()["views"]] == list(default_views())


@pytest.mark.parametrize(
    ("headers", "status", "challenge"),
    [
        ({}, 401, 'Bearer realm="braid", scope="write"'),
        (_bearer("not-a-token-of-this-deployment"), 401, 'Bearer realm="braid", error="invalid_token", scope="write"'),
        ({"Authorization": f"Basic {WRITE}"}, 401, 'Bearer realm="braid", error="invalid_token", scope="write"'),
        (_bearer(READ), 403, 'Bearer realm="braid", error="insufficient_scope", scope="write"'),
    ],
)
def test_sending_events_needs_the_write_token(headers: dict, status: int, challenge: str) -> None:
    ingest, producer = _ingest(TOKENS)
    answer = ingest.post("/v1/events", json=_events(2), headers=headers)
    assert (answer.status_code, answer.headers["WWW-Authenticate"]) == (status, challenge)
    assert producer.sent == []  # refused before anything reached Kafka
    assert answer.json()["error"]  # a reason, as every error of the API has


def test_the_write_token_sends_and_health_needs_no_token() -> None:
    ingest, producer = _ingest(TOKENS)
    events = _events(4)
    answer = ingest.post("/v1/events", json=events, headers=_bearer(WRITE))
    assert (answer.status_code, answer.json()["accepted"]) == (200, 4)
    assert [event["event_id"] for event in producer.sent] == [event["event_id"] for event in events]
    assert ingest.get("/health").json() == {"status": "ok"}


def test_a_read_only_token_is_told_why_it_is_refused() -> None:
    ingest, _ = _ingest(TOKENS)
    answer = ingest.post("/v1/events", json=_events(1), headers=_bearer(READ))
    assert answer.json() == {"error": "this token may only read; POST /v1/events needs the write token"}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/views", {}, 401),
        ("/v1/views", _bearer("wrong-token-wrong-token-wrong"), 401),
        ("/metrics", {}, 401),
        ("/v1/freshness", _bearer(READ[:-1]), 401),
        ("/v1/views", _bearer(READ), 200),
        ("/v1/views", _bearer(WRITE), 200),
        ("/", {}, 200),  # the dashboard page itself holds no data; its requests carry the token
    ],
)
def test_queries_accept_the_read_or_the_write_token(path: str, headers: dict, status: int) -> None:
    answer = _serving(TOKENS).get(path, headers=headers)
    assert answer.status_code == status
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="braid"')


def test_the_serving_api_has_no_write_path() -> None:
    """Every route of the serving API only reads, so none needs the write token; a new one that writes must say so."""
    routes = _serving(TOKENS).app.routes
    methods = {method for route in routes for method in getattr(route, "methods", set())}
    assert methods <= {"GET", "HEAD"}, methods


def test_no_answer_echoes_a_token() -> None:
    ingest, _ = _ingest(TOKENS)
    serving = _serving(TOKENS)
    offered = "offered-token-" + "o" * 30
    answers = [
        ingest.post("/v1/events", json=_events(1), headers=_bearer(READ)),
        ingest.post("/v1/events", json=_events(1), headers=_bearer(offered)),
        serving.get("/v1/views", headers=_bearer(offered)),
        serving.get("/metrics", headers={"Authorization": f"Basic {READ}"}),
    ]
    for answer in answers:
        shown = answer.text + " ".join(f"{k}: {v}" for k, v in answer.headers.items())
        assert answer.status_code in (401, 403)
        assert READ not in shown and WRITE not in shown and offered not in shown


def test_a_token_is_never_in_a_repr() -> None:
    assert READ not in repr(TOKENS) and WRITE not in repr(TOKENS)


def test_the_ingest_command_refuses_to_start_when_nothing_could_write() -> None:
    import os
    import subprocess
    import sys

    env = {name: value for name, value in os.environ.items() if not name.startswith("BRAID_")} | {"BRAID_API_READ_TOKEN": READ}
    result = subprocess.run([sys.executable, "-m", "braid.cli", "ingest"], capture_output=True, text=True, env=env, timeout=120)
    assert (result.returncode, result.stderr) == (
        2, "braid: ingest: BRAID_API_READ_TOKEN is set but BRAID_API_WRITE_TOKEN is not, so every event would be refused; set it\n"
    )
    assert READ not in result.stderr
