"""The serving API on the secured stack (tests/secured_stack.py): it answers with the read-only Cassandra role and the
API tokens on; and injection-like text through every query parameter gets a 4xx with a reason or a correct (empty)
answer, while every table stays exactly as it was. The injection runs against an API signed in as the *owner* role:
what protects the tables there is the prepared statements, not the reader's permissions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from braid.auth import ApiTokens
from braid.cassandra import cluster_from_settings
from braid.layout import shard_of
from schemas.contracts import rules
from schemas.views import default_views
from serving.api import create_app
from serving.main import create_serving_app, open_queries
from serving.metrics import pipeline_status
from serving.queries import Queries
from serving.store import ServingStore
from speed.cassandra_io import SpeedStore
from tests.secured_stack import SecuredStack

pytestmark = pytest.mark.services

VIEW = "page_views_by_url"
KEY = ["/home"]
METRICS = {"views": 7, "total_duration_ms": 7000}
PAYLOADS = [
    "'",
    "' OR '1'='1",
    "'; DROP TABLE batch_views; --",
    "x' ALLOW FILTERING; --",
    "1; DROP KEYSPACE braid_secured",
    '"; TRUNCATE speed_views; //',
    "/* comment */ SELECT",
    "-- comment",
    "$$ escaped $$",
    "%27%3B%20DROP",
    "../../etc/passwd",
    "ö'ü \u202e🙂 ' ; --",
    "nul\x00byte",
    "A" * 2000,
]


@pytest.fixture(scope="module")
def seeded(secured_stack: SecuredStack) -> datetime:
    """One speed row, written as the speed layer writes it (as the owner): 7 views of /home, two minutes ago."""
    settings = secured_stack.settings
    bucket = int(time.time()) // rules().handoff_bucket_seconds
    window = datetime.fromtimestamp((int(time.time()) // 60 - 2) * 60, UTC)
    key = json.dumps(KEY, separators=(",", ":"))
    cluster = cluster_from_settings(settings)
    try:
        store = SpeedStore(cluster.connect(settings.cassandra_keyspace))
        store.write_view_rows([(VIEW, bucket, shard_of(key, rules().view_shards), key, window, 0, METRICS, {})])
        store.index_buckets([(VIEW, bucket)])
        stats = {
            "input_rows": 7, "valid_rows": 7, "quarantined_rows": 0, "quarantine_by_reason": {}, "view_rows": 1,
            "freshness_p50_ms": 1, "freshness_p95_ms": 1, "freshness_p99_ms": 1, "freshness_max_ms": 1, "max_offsets": {"0": 6},
        }  # fmt: skip
        store.record_batch(0, bucket, stats)
        store.record_complete_through(bucket - 1)
    finally:
        cluster.shutdown()
    return window


def _bearer(secured_stack: SecuredStack, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {getattr(secured_stack.settings, name).get_secret_value()}"}


@pytest.fixture(scope="module")
def as_reader(secured_stack: SecuredStack, seeded) -> Iterator[TestClient]:
    with open_queries(secured_stack.settings) as queries, TestClient(create_serving_app(secured_stack.settings, queries)) as client:
        yield client


@pytest.fixture(scope="module")
def as_owner(secured_stack: SecuredStack, seeded) -> Iterator[TestClient]:
    settings = secured_stack.settings
    cluster = cluster_from_settings(settings)
    try:
        store = ServingStore(cluster.connect(settings.cassandra_keyspace))
        queries = Queries(store, default_views(), rules())
        app = create_app(queries, tokens=ApiTokens.from_settings(settings), pipeline=lambda: pipeline_status(store, rules().handoff_bucket_seconds))
        with TestClient(app, headers=_bearer(secured_stack, "api_read_token")) as client:
            yield client
    finally:
        cluster.shutdown()


def _series(client: TestClient, **params) -> dict:
    answer = client.get(f"/v1/views/{VIEW}/series", params={"key": KEY, "start": "-1h", **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_api_answers_with_the_read_only_role(secured_stack: SecuredStack, as_reader: TestClient, seeded: datetime) -> None:
    read, write = _bearer(secured_stack, "api_read_token"), _bearer(secured_stack, "api_write_token")
    assert as_reader.get(f"/v1/views/{VIEW}/series", params={"key": KEY}).status_code == 401
    for token in (read, write):
        answer = as_reader.get(f"/v1/views/{VIEW}/series", params={"key": KEY, "start": "-1h"}, headers=token).json()
        assert [(p["window_start"], p["metrics"], p["source"]) for p in answer["points"]] == [
            (seeded.isoformat().replace("+00:00", "Z"), METRICS, "speed")
        ]
    top = as_reader.get(f"/v1/views/{VIEW}/top", params={"start": "-1h", "metric": "views"}, headers=read).json()
    assert [(e["key"], e["value"]) for e in top["entries"]] == [(KEY, 7)]
    assert as_reader.get("/v1/freshness", headers=read).json()["speed"]["last_batch"] == 0
    assert "braid_speed_last_batch 0" in as_reader.get("/metrics", headers=read).text


def _snapshot(secured_stack: SecuredStack) -> dict[str, list]:
    """Every row of every table of the keyspace, and the keyspaces and tables there are, read as the owner."""
    settings = secured_stack.settings
    cluster = cluster_from_settings(settings)
    try:
        session = cluster.connect(settings.cassandra_keyspace)
        tables = sorted(row.table_name for row in session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (settings.cassandra_keyspace,)
        ))  # fmt: skip
        snapshot = {table: sorted(repr(tuple(row)) for row in session.execute(f"SELECT * FROM {table}")) for table in tables}
        snapshot["keyspaces"] = sorted(row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces"))
        return snapshot
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def before(secured_stack: SecuredStack, seeded) -> dict[str, list]:
    snapshot = _snapshot(secured_stack)
    assert len(snapshot["speed_views"]) == 1 and len(snapshot) >= 10
    return snapshot


SERIES = [("view", None), ("key", None), ("start", None), ("end", None), ("grain", None)]
TOP = [("view", "top"), ("start", "top"), ("end", "top"), ("n", "top"), ("metric", "top")]


@pytest.mark.parametrize(("parameter", "endpoint"), SERIES + TOP)
def test_injection_text_in_every_parameter_gets_a_reason_or_an_empty_answer(as_owner: TestClient, before, parameter: str, endpoint) -> None:
    for payload in PAYLOADS:
        view = quote(payload, safe="") if parameter == "view" else VIEW
        params = {"start": "-1h"} | ({} if endpoint == "top" else {"key": KEY})
        if parameter != "view":
            params[parameter] = [payload] if parameter == "key" else payload
        answer = as_owner.get(f"/v1/views/{view}/{endpoint or 'series'}", params=params)
        body = answer.json()
        if answer.status_code == 200:
            # Only a key may be any text: it names no stored key, so the answer is empty, not an error.
            assert (parameter, body["points"]) == ("key", []), (payload, body)
        else:
            assert answer.status_code in (400, 404), (payload, answer.status_code, body)
            assert body.get("error") or body.get("detail"), (payload, body)


@pytest.mark.parametrize("query", ["key=%FF%FE", "key=%27%00%27", "key=%C0%27", "start=%FF", "n=%FF", "metric=%FF"])
def test_bytes_that_are_not_utf8_get_a_reason_or_an_empty_answer(as_owner: TestClient, before, query: str) -> None:
    answer = as_owner.get(f"/v1/views/{VIEW}/series?{query}" if query.startswith(("key", "start")) else f"/v1/views/{VIEW}/top?{query}")
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:
        assert query.startswith("key") and answer.json()["points"] == []
    else:
        assert answer.json()["error"]


def test_after_all_of_it_every_table_is_unchanged_and_the_answer_too(secured_stack: SecuredStack, as_owner: TestClient, before, seeded) -> None:
    """Runs after the injection tests of this module (pytest keeps the file's order)."""
    assert _snapshot(secured_stack) == before
    assert [(p["metrics"], p["source"]) for p in _series(as_owner)["points"]] == [(METRICS, "speed")]
    assert (datetime.now(UTC) - seeded) < timedelta(hours=1)
