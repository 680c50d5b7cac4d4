"""The HTTP ingest endpoint for apps and devices: `POST /v1/events` with a JSON array of events (or {"events": [...]}).

Each event is checked against its contract. Accepted events are in Kafka (acknowledged by acks=all) before the answer
returns. The answer lists every event's fate: 200 when all were accepted, 422 when some were rejected (each with its
reason; the accepted ones *were* written and a resend is harmless, views count an event_id once), 400 for a body that
is not a batch of events, 413 for a batch over the limit, 503 when Kafka did not acknowledge. A 400 or 413 for a body
that fails as a whole as an event would (not UTF-8, not JSON, too large) carries that quarantine reason as well.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from braid.auth import Access, ApiTokens, Refused, refusal_response, requirement
from braid.producer import EventProducer
from schemas.validation import Rejection, Validator

_encode = msgspec.json.Encoder().encode


def create_app(
    producer: EventProducer,
    validator: Validator,
    *,
    max_batch: int,
    max_event_bytes: int,
    tokens: ApiTokens = ApiTokens(),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    app = FastAPI(title="Braid ingest", version="1", description=__doc__)
    app.add_exception_handler(Refused, refusal_response)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    def _ingest(events: list[Any]) -> JSONResponse:
        now = clock()
        results: list[dict[str, Any]] = []
        pending = []
        for index, event in enumerate(events):
            event_id = event.get("event_id") if isinstance(event, dict) else None
            result: dict[str, Any] = {"index": index, "event_id": event_id if isinstance(event_id, str) else None}
            size = len(_encode(event))
            rejection = (
                Rejection("oversized", f"{size} bytes, at most {max_event_bytes}")
                if size > max_event_bytes
                else validator.check(event, now)
            )
            if rejection is not None:
                result.update(status="rejected", reason=rejection.reason, detail=rejection.detail)
            else:
                try:
                    pending.append((result, producer.send(event)))
                except Exception as error:  # no broker or no topic metadata within the producer's max_block_ms
                    result.update(status="failed", reason="kafka_unavailable", detail=f"{type(error).__name__}: {error}")
            results.append(result)
        producer.flush(timeout=30)
        for result, future in pending:
            try:
                future.get(timeout=30)
                result["status"] = "accepted"
            except Exception as error:  # not acknowledged by Kafka: the client must retry this one
                result.update(status="failed", reason="kafka_unavailable", detail=f"{type(error).__name__}: {error}")
        counts = {status: sum(1 for r in results if r["status"] == status) for status in ("accepted", "rejected", "failed")}
        code = 503 if counts["failed"] else 422 if counts["rejected"] else 200
        return JSONResponse({**counts, "results": results}, status_code=code)

    @app.post("/v1/events", dependencies=[Depends(requirement(tokens, Access.WRITE))])
    async def ingest(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > max_batch * max_event_bytes:
            return _error(413, f"body of {len(body)} bytes is larger than {max_batch} events of {max_event_bytes} bytes", "oversized")
        try:
            body.decode("utf-8")  # msgspec checks only inside strings, and then raises UnicodeDecodeError
        except UnicodeDecodeError as error:
            return _error(400, f"body is not UTF-8: invalid byte at position {error.start}", "not_utf8")
        try:
            decoded = msgspec.json.decode(body)
        except msgspec.DecodeError as error:
            return _error(400, f"body is not JSON: {error}", "unparseable")
        except RecursionError:  # the decoder recurses per nesting level
            return _error(400, "body is not JSON: nested too deeply", "unparseable")
        events = decoded.get("events") if isinstance(decoded, dict) else decoded
        if not isinstance(events, list):
            return _error(400, 'body must be a JSON array of events or {"events": [...]}')
        if not events:
            return _error(400, "the batch is empty")
        if len(events) > max_batch:
            return _error(413, f"{len(events)} events in one batch; at most {max_batch}")
        return await run_in_threadpool(_ingest, events)

    return app


def _error(status: int, error: str, reason: str | None = None) -> JSONResponse:
    """`reason` is the quarantine reason when the whole body fails as a single event would (schemas.validation)."""
    return JSONResponse({"error": error} if reason is None else {"error": error, "reason": reason}, status_code=status)
