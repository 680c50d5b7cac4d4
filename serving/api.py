"""The HTTP API of the serving layer (FastAPI): merged queries for dashboards, pipeline freshness, Prometheus metrics,
and the dashboard page itself.

    GET /health                                    200 when Cassandra answers, else 503 with the reason
    GET /v1/views                                  the declared views
    GET /v1/views/{view}/series?key=..&start=..&end=..&grain=..
    GET /v1/views/{view}/top?start=..&end=..&n=..&metric=..
    GET /v1/freshness                              batch cutoff and its age, speed progress, lag, quarantine
    GET /metrics                                   Prometheus text: pipeline figures and this API's latency
    GET /                                          the dashboard

Times are ISO 8601 (`2026-11-24T10:00:00Z`) or relative to now (`-15m`, `-2h`, `-1d`); `end` defaults to now and
`start` to an hour before `end`. With API tokens configured (braid.auth), /v1 and /metrics need
`Authorization: Bearer <token>` with the read or the write token; every path here only reads.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from braid.auth import Access, ApiTokens, Refused, refusal_response, requirement
from serving.metrics import LatencyHistogram, pipeline_metrics
from serving.queries import QueryError, Queries

_RELATIVE = re.compile(r"^-(\d{1,6})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DASHBOARD = Path(__file__).parent / "static" / "dashboard.html"


def parse_time(text: str | None, name: str, now: datetime) -> datetime | None:
    if text is None or text == "":
        return None
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name} {text!r} is not an ISO 8601 time (2026-11-24T10:00:00Z) or a relative one (-15m, -2h)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def create_app(
    queries: Queries,
    *,
    tokens: ApiTokens,
    pipeline: Callable[[], dict[str, Any]],
    refresh_seconds: float = 5.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """`pipeline()` returns the pipeline's figures (serving.metrics.pipeline_status); it is called per request."""
    app = FastAPI(title="Braid serving", version="1", description=__doc__)
    latency = LatencyHistogram()

    authorized = requirement(tokens, Access.READ)

    @app.exception_handler(QueryError)
    async def _bad_query(request: Request, error: QueryError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    app.add_exception_handler(Refused, refusal_response)

    async def _unavailable(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": _unavailable_reason(error)}, status_code=503)

    # Registered per class, not under Exception: Starlette answers those in its exception middleware, where an outage
    # is an expected 503 (no traceback per request in the log, and the latency histogram sees the answer).
    for unavailable in _unavailable_errors():
        app.add_exception_handler(unavailable, _unavailable)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(error).__name__}"}, status_code=500)

    @app.middleware("http")
    async def _timed(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        latency.observe(getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - started)
        return response

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            await run_in_threadpool(queries.store.pointer)
        except Exception as error:
            return JSONResponse({"status": "unavailable", "error": _unavailable_reason(error) or str(error)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/views", dependencies=[Depends(authorized)])
    async def views() -> dict[str, Any]:
        return {"views": queries.describe_views()}

    def _window(start: str | None, end: str | None) -> tuple[datetime, datetime]:
        now = clock()
        until = parse_time(end, "end", now) or now
        return parse_time(start, "start", now) or until - timedelta(hours=1), until

    @app.get("/v1/views/{view}/series", dependencies=[Depends(authorized)])
    async def series(
        view: str,
        key: list[str] = Query(default=[], description="one value per dimension of the view, in order"),
        start: str | None = None,
        end: str | None = None,
        grain: str | None = None,
    ) -> dict[str, Any]:
        since, until = _window(start, end)
        answer = await run_in_threadpool(queries.series, view, key, since, until, grain)
        return _json(asdict(answer))

    @app.get("/v1/views/{view}/top", dependencies=[Depends(authorized)])
    async def top(view: str, start: str | None = None, end: str | None = None, n: str = "10", metric: str | None = None) -> dict[str, Any]:
        if not re.fullmatch(r"\d{1,7}", n):
            raise QueryError(f"n must be a whole number, got {n!r}")
        since, until = _window(start, end)
        answer = await run_in_threadpool(queries.top, view, since, until, int(n), metric)
        return _json(asdict(answer))

    @app.get("/v1/freshness", dependencies=[Depends(authorized)])
    async def freshness() -> dict[str, Any]:
        return _json(await run_in_threadpool(pipeline))

    @app.get("/metrics", dependencies=[Depends(authorized)], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        figures = await run_in_threadpool(pipeline)
        text = pipeline_metrics(figures) + latency.render()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    async def dashboard() -> HTMLResponse:
        page = DASHBOARD.read_text().replace("__REFRESH_MS__", str(int(refresh_seconds * 1000)))
        return HTMLResponse(page)

    return app


def _unavailable_errors() -> tuple[type[Exception], ...]:
    """The Cassandra driver's errors that mean "not now" rather than "wrong": answered with 503 and a reason."""
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable
    from cassandra.cluster import NoHostAvailable

    return (NoHostAvailable, OperationTimedOut, ReadTimeout, Unavailable)


def _unavailable_reason(error: Exception) -> str | None:
    from cassandra.cluster import NoHostAvailable

    if isinstance(error, NoHostAvailable):
        return "cassandra: no node answers; the answer cannot be read right now"
    if isinstance(error, _unavailable_errors()):
        return f"cassandra: {type(error).__name__}; try again"
    return None
