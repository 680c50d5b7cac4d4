"""The API's answers that need no service. During a Cassandra outage (a store whose every read fails as the driver
fails), each query is a 503 naming the reason, answered by the app itself: the test client re-raises anything that
escapes to Starlette's last-resort handler (the one that logs a traceback per request), so a pass shows none did. The
outage with a real node killed and restarted is tests/faults/test_cassandra_killed.py. A key is refused only past
what its contract allows."""

from __future__ import annotations

import pytest
from cassandra import OperationTimedOut, ReadTimeout
from cassandra.cluster import NoHostAvailable
from fastapi.testclient import TestClient

from braid.auth import ApiTokens
from schemas.contracts import rules
from schemas.views import default_views
from serving.api import create_app
from serving.queries import Queries


class FailingStore:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise self.error

        return fail


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": ConnectionRefusedError(111, "refused")}),
         "cassandra: no node answers; the answer cannot be read right now"),
        (OperationTimedOut("errors={}, last_host=127.0.0.1:9042"), "cassandra: OperationTimedOut; try again"),
        (ReadTimeout("Operation timed out - received only 0 responses."), "cassandra: ReadTimeout; try again"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/v1/views/page_views_by_url/series?key=https://shop.example/", "/v1/views/page_views_by_url/top"])
def test_an_outage_is_a_503_with_its_reason(error: Exception, reason: str, path: str) -> None:
    queries = Queries(store=FailingStore(error), views=default_views(), rules=rules())  # type: ignore[arg-type]
    client = TestClient(create_app(queries, tokens=ApiTokens(), pipeline=lambda: {}))
    response = client.get(path)
    assert (response.status_code, response.json()) == (503, {"error": reason})


def test_an_internal_error_is_still_a_500() -> None:
    queries = Queries(store=FailingStore(KeyError("bug")), views=default_views(), rules=rules())  # type: ignore[arg-type]
    client = TestClient(create_app(queries, tokens=ApiTokens(), pipeline=lambda: {}), raise_server_exceptions=False)
    response = client.get("/v1/views/page_views_by_url/top")
    assert (response.status_code, response.json()) == (500, {"error": "internal error: KeyError"})


@pytest.mark.parametrize(("length", "status"), [(2048, 503), (2049, 400)])
def test_a_key_may_be_as_long_as_its_contract_allows(length: int, status: int) -> None:
    # page_view's url allows 2,048 characters: such a key reaches the store (here: an outage), a longer one is refused.
    queries = Queries(store=FailingStore(NoHostAvailable("down", {})), views=default_views(), rules=rules())  # type: ignore[arg-type]
    client = TestClient(create_app(queries, tokens=ApiTokens(), pipeline=lambda: {}))
    response = client.get("/v1/views/page_views_by_url/series", params={"key": "u" * length})
    assert response.status_code == status
    if status == 400:
        assert response.json() == {"error": f"key url is {length} characters long; page_views_by_url holds at most 2048"}
