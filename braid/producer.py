"""Producing events to Kafka (kafka-python): validated, keyed by entity, durable, and never dropped silently.

Durability: acks=all with the idempotent producer, so a retried batch is written once. Throughput: lz4 compression
and batching (linger). Every send returns a future; `send_many` waits for all of them and reports each failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from kafka import KafkaProducer

from schemas.contracts import Contract
from schemas.validation import InvalidEvent, Rejection, Validator

_encode = msgspec.json.Encoder().encode


@dataclass
class DeliveryReport:
    """What became of a batch: how many Kafka acknowledged, and for each other event its index and why."""

    sent: int = 0
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)  # failed validation: never sent
    failed: list[tuple[int, str]] = field(default_factory=list)  # sent, but Kafka did not acknowledge

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed


def event_key(event: dict[str, Any], registry: dict[str, dict[int, Contract]]) -> bytes:
    """The partition key: the contract's entity field (e.g. payload.user_id), so one entity stays in one partition.

    Total over any decoded JSON (the trusted path sends unvalidated events): without a contract or an entity string,
    the event_id, and without that, no key."""
    if not isinstance(event, dict):
        return b""
    event_type, version, payload = event.get("event_type"), event.get("schema_version"), event.get("payload")
    versions = registry.get(event_type) if isinstance(event_type, str) else None
    contract = versions.get(version) if versions and isinstance(version, int) else None
    if contract is not None and isinstance(payload, dict):
        value = payload.get(contract.key)
        if isinstance(value, str):
            return value.encode()
    return str(event.get("event_id", "")).encode()


class EventProducer:
    """One Kafka producer for events. `validate=False` skips contract checks for trusted high-rate paths."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        topic: str,
        *,
        registry: dict[str, dict[int, Contract]],
        validator: Validator | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        linger_ms: int = 10,
        batch_size: int = 256 * 1024,
        compression: str | None = "lz4",
        **kafka_config: Any,
    ) -> None:
        self.topic = topic
        self._registry = registry
        self._validator = validator
        self._clock = clock
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            compression_type=compression,
            linger_ms=linger_ms,
            batch_size=batch_size,
            max_request_size=2 * 1024 * 1024,
            **kafka_config,
        )

    def send(self, event: dict[str, Any]):
        """Validate (unless trusted), key and send one event; returns kafka-python's future. Raises InvalidEvent.

        The checks run in the speed layer's order, on the record it will get: size first (an event can pass its
        contract and still encode to 200 KB: 32 attribute values of 1024 NUL characters), then UTF-8 (a Python str may
        hold lone surrogates), then the contract. So a record gets the same reason here as in quarantine."""
        if self._validator is None:
            return self._producer.send(self.topic, key=event_key(event, self._registry), value=_encode(event))
        try:
            value: bytes | None = _encode(event)
        except UnicodeEncodeError as error:
            raise InvalidEvent(Rejection("not_utf8", f"a string is not encodable as UTF-8 ({error.reason})")) from None
        except TypeError:  # not JSON at all: the contract check says which field
            value = None
        rejection = self._validator.check_size(len(value)) if value is not None else None
        rejection = rejection or self._validator.check(event, self._clock())
        if rejection is not None:
            raise InvalidEvent(rejection)
        return self._producer.send(self.topic, key=event_key(event, self._registry), value=value if value is not None else _encode(event))

    def send_raw(self, key: bytes | None, value: bytes):
        """Send bytes as they are (no validation): for replays, dead letters and the generator's malformed records."""
        return self._producer.send(self.topic, key=key, value=value)

    def send_many(self, events: Iterable[dict[str, Any]], timeout: float = 60.0) -> DeliveryReport:
        """Send every valid event, wait for Kafka's acknowledgements, and account for every event."""
        report = DeliveryReport()
        pending = []
        for index, event in enumerate(events):
            try:
                pending.append((index, self.send(event)))
            except InvalidEvent as invalid:
                report.rejected.append((index, invalid.rejection))
            except Exception as error:  # e.g. no metadata for the topic within max_block_ms
                report.failed.append((index, f"{type(error).__name__}: {error}"))
        self._producer.flush(timeout=timeout)
        for index, future in pending:
            try:
                future.get(timeout=timeout)
                report.sent += 1
            except Exception as error:  # kafka-python raises its KafkaError family, or a timeout
                report.failed.append((index, f"{type(error).__name__}: {error}"))
        return report

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
