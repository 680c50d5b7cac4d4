"""A realistic, deterministic event stream for demos, tests and benchmarks.

For a given seed and start time the same records come out, in the same order: a commerce app's page views and payments
over Zipf-popular users, merchants and URLs, with late and out-of-order event times, resent duplicates, and malformed
records of every kind the quarantine handles (each with the reason it must be quarantined for). The ground truth
(valid events, duplicates removed) is what tests compare the platform's answers with.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

COUNTRIES = ("US", "DE", "GB", "FR", "BR", "IN", "JP", "ES", "IT", "NL", "SE", "CH", "MX", "CA", "AU")
DEVICES = ("mobile", "desktop", "tablet", "tv", "other")
DEVICE_WEIGHTS = (60, 30, 7, 2, 1)
CURRENCIES = ("EUR", "USD", "GBP", "JPY", "CHF", "BRL", "INR")
STATUSES = ("captured", "authorized", "declined", "refunded")
STATUS_WEIGHTS = (70, 15, 12, 3)
METHODS = ("card", "wallet", "bank_transfer")
SECTIONS = ("product", "category", "search", "cart", "checkout", "account", "help", "blog")
USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
)
# Every kind of bad record the quarantine must handle, with the reason the platform must give.
MALFORMED_KINDS = (
    "unparseable", "truncated", "nan", "not_utf8", "not_an_object", "missing_field", "wrong_type", "unexpected_field",
    "unknown_event_type", "unknown_schema_version", "invalid_value", "absurd_time_past", "absurd_time_future", "oversized",
)  # fmt: skip
EXPECTED_REASON = {
    "unparseable": "unparseable", "truncated": "unparseable", "nan": "unparseable", "not_utf8": "not_utf8",
    "not_an_object": "not_an_object", "missing_field": "missing_field", "wrong_type": "wrong_type",
    "unexpected_field": "unexpected_field", "unknown_event_type": "unknown_event_type",
    "unknown_schema_version": "unknown_schema_version", "invalid_value": "invalid_value",
    "absurd_time_past": "absurd_time", "absurd_time_future": "absurd_time", "oversized": "oversized",
}  # fmt: skip


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 7
    count: int = 10_000
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    nominal_rate: float = 1000.0  # events/s of event time: event i happens at start + i / nominal_rate
    users: int = 5_000
    merchants: int = 200
    urls: int = 1_000
    zipf_exponent: float = 1.1
    payment_fraction: float = 0.3
    late_fraction: float = 0.05
    mean_lateness_seconds: float = 1200.0
    max_lateness_seconds: float = 3 * 3600.0
    out_of_order_fraction: float = 0.2
    out_of_order_seconds: float = 30.0
    duplicate_fraction: float = 0.02
    malformed_fraction: float = 0.01
    event_bytes: int = 0  # pad page views (v2 attributes) up to about this many bytes; 0 leaves them natural
    source: str = "braid-generator"
    partition: int = 0  # this process's share when several generate one stream: event ids stay unique
    partitions: int = 1

    def __post_init__(self) -> None:
        for name in ("payment_fraction", "late_fraction", "out_of_order_fraction", "duplicate_fraction", "malformed_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.duplicate_fraction + self.malformed_fraction > 1.0:
            raise ValueError("duplicate_fraction + malformed_fraction must not exceed 1")
        if self.count < 0 or self.nominal_rate <= 0 or min(self.users, self.merchants, self.urls) < 1:
            raise ValueError("count must be >= 0, nominal_rate > 0, and users, merchants, urls >= 1")
        if self.start.tzinfo is None:
            raise ValueError("start must carry a time zone")


@dataclass(frozen=True)
class Record:
    """One record as produced to Kafka, with what the platform must make of it."""

    category: str  # on_time, late, out_of_order, duplicate, or malformed:<kind>
    key: bytes
    value: bytes
    event: dict[str, Any] | None  # the event for valid records and duplicates; None for malformed ones
    expected_reason: str | None  # the quarantine reason for malformed records


class _Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1 / (rank + 1) ** s: a few keys are very hot."""

    def __init__(self, n: int, exponent: float) -> None:
        weights = [1.0 / (rank + 1) ** exponent for rank in range(n)]
        self._cumulative = list(itertools.accumulate(weights))
        self._total = self._cumulative[-1]

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cumulative, rng.random() * self._total)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventGenerator:
    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self._rng = random.Random(f"{config.seed}/{config.partition}")
        self._users = _Zipf(config.users, config.zipf_exponent)
        self._merchants = _Zipf(config.merchants, config.zipf_exponent)
        self._urls = _Zipf(config.urls, config.zipf_exponent)
        self._recent: list[Record] = []  # a ring of recent valid records that duplicates resend

    def _event_time(self, index: int) -> tuple[datetime, str]:
        config, rng = self.config, self._rng
        base = config.start + timedelta(seconds=index / config.nominal_rate)
        draw = rng.random()
        if draw < config.late_fraction:
            lateness = min(rng.expovariate(1.0 / config.mean_lateness_seconds), config.max_lateness_seconds)
            return base - timedelta(seconds=max(lateness, config.out_of_order_seconds)), "late"
        if draw < config.late_fraction + config.out_of_order_fraction:
            return base - timedelta(seconds=rng.uniform(1.0, config.out_of_order_seconds)), "out_of_order"
        return base - timedelta(seconds=rng.uniform(0.0, 0.5)), "on_time"

    def _page_view(self, event_id: str, when: datetime) -> dict[str, Any]:
        rng, config = self._rng, self.config
        user = self._users.draw(rng)
        url_rank = self._urls.draw(rng)
        payload: dict[str, Any] = {
            "url": f"https://shop.example/{SECTIONS[url_rank % len(SECTIONS)]}/{url_rank}",
            "user_id": f"user-{user}",
            "session_id": f"s-{user}-{int(when.timestamp()) // 1800}",
            "country": COUNTRIES[user % len(COUNTRIES)],
            "device": rng.choices(DEVICES, DEVICE_WEIGHTS)[0],
            "referrer": f"https://shop.example/{SECTIONS[rng.randrange(len(SECTIONS))]}",
            "user_agent": USER_AGENTS[user % len(USER_AGENTS)],
            "duration_ms": int(rng.expovariate(1 / 8000.0)),
        }
        version = 1
        if rng.random() < 0.5:
            version = 2
            payload["title"] = f"Page {url_rank}"
            payload["load_ms"] = int(rng.uniform(50, 2500))
        event = {"event_id": event_id, "event_type": "page_view", "schema_version": version, "event_time": _iso(when), "source": config.source, "payload": payload}
        if config.event_bytes:
            room = config.event_bytes - len(_encode(event)) - 40
            if room > 0:
                event["schema_version"] = 2
                payload["attributes"] = {"experiment": f"exp-{url_rank % 7}", "pad": "x" * min(room, 1000)}
        return event

    def _payment(self, event_id: str, when: datetime) -> dict[str, Any]:
        rng, config = self._rng, self.config
        user = self._users.draw(rng)
        merchant = self._merchants.draw(rng)
        payload = {
            "payment_id": f"pay-{event_id}",
            "user_id": f"user-{user}",
            "merchant_id": f"merchant-{merchant}",
            "amount": int(rng.lognormvariate(7.5, 1.2)) + 1,  # cents: a median near 18.00
            "currency": CURRENCIES[merchant % len(CURRENCIES)],
            "status": rng.choices(STATUSES, STATUS_WEIGHTS)[0],
            "method": METHODS[rng.randrange(len(METHODS))],
            "country": COUNTRIES[user % len(COUNTRIES)],
        }
        return {"event_id": event_id, "event_type": "payment", "schema_version": 1, "event_time": _iso(when), "source": config.source, "payload": payload}

    def _valid(self, index: int) -> Record:
        event_id = f"{self.config.seed}-{self.config.partition}-{index}"
        when, category = self._event_time(index)
        if self._rng.random() < self.config.payment_fraction:
            event = self._payment(event_id, when)
        else:
            event = self._page_view(event_id, when)
        return Record(category, event["payload"]["user_id"].encode(), _encode(event), event, None)

    def _malformed(self, index: int) -> Record:
        rng = self._rng
        kind = MALFORMED_KINDS[rng.randrange(len(MALFORMED_KINDS))]
        valid = self._valid(index)
        event = msgspec.json.decode(valid.value)  # a private copy to break
        payload = event["payload"]
        if kind == "unparseable":
            value = b"this is not json {"
        elif kind == "truncated":
            value = valid.value[: len(valid.value) // 2]
        elif kind == "nan":
            value = valid.value.replace(b'"event_time"', b'"nan_field":NaN,"event_time"', 1)
        elif kind == "not_utf8":
            value = valid.value.replace(b'"source":"', b'"source":"\xff\xfe', 1)
        elif kind == "not_an_object":
            value = b"[" + valid.value + b"]"
        else:
            if kind == "missing_field":
                payload.pop("user_id")
            elif kind == "wrong_type":
                payload["user_id"] = 12345
            elif kind == "unexpected_field":
                payload["coupon"] = "FREE-STUFF"
            elif kind == "unknown_event_type":
                event["event_type"] = "checkout_started"
            elif kind == "unknown_schema_version":
                event["schema_version"] = 99
            elif kind == "invalid_value":
                if event["event_type"] == "payment":
                    payload["amount"] = -500
                else:
                    payload["device"] = "smart-fridge"
            elif kind == "absurd_time_past":
                event["event_time"] = "1970-01-01T00:00:00.000Z"
            elif kind == "absurd_time_future":
                event["event_time"] = "2200-01-01T00:00:00.000Z"
            elif kind == "oversized":
                event["source"] = "x" * 70_000
            value = _encode(event)
        return Record(f"malformed:{kind}", valid.key, value, None, EXPECTED_REASON[kind])

    def records(self) -> Iterator[Record]:
        config, rng = self.config, self._rng
        for index in range(config.count):
            draw = rng.random()
            if draw < config.duplicate_fraction and self._recent:
                original = self._recent[rng.randrange(len(self._recent))]
                yield Record("duplicate", original.key, original.value, original.event, None)
                continue
            if draw < config.duplicate_fraction + config.malformed_fraction:
                yield self._malformed(index)
                continue
            record = self._valid(index)
            if len(self._recent) < 1000:
                self._recent.append(record)
            else:
                self._recent[rng.randrange(1000)] = record
            yield record


@dataclass
class GenerationSummary:
    produced: int = 0
    categories: Counter = field(default_factory=Counter)
    expected_quarantine: Counter = field(default_factory=Counter)  # reason -> records
    valid_raw: int = 0  # valid records as produced, duplicates included: what the master dataset holds
    valid_unique: int = 0  # distinct valid event ids: the ground truth
    bytes: int = 0
    seconds: float = 0.0
    delivery_failures: int = 0

    def add(self, record: Record) -> None:
        self.produced += 1
        self.bytes += len(record.value)
        self.categories[record.category] += 1
        if record.expected_reason is not None:
            self.expected_quarantine[record.expected_reason] += 1
        else:
            self.valid_raw += 1
            if record.category != "duplicate":
                self.valid_unique += 1

    def merge(self, other: GenerationSummary) -> None:
        for name in ("produced", "valid_raw", "valid_unique", "bytes", "delivery_failures"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.categories.update(other.categories)
        self.expected_quarantine.update(other.expected_quarantine)
        self.seconds = max(self.seconds, other.seconds)

    def as_dict(self) -> dict[str, Any]:
        rate = self.produced / self.seconds if self.seconds else None
        return {
            "produced": self.produced,
            "valid_raw": self.valid_raw,
            "valid_unique": self.valid_unique,
            "quarantine_expected": sum(self.expected_quarantine.values()),
            "categories": dict(sorted(self.categories.items())),
            "expected_quarantine_by_reason": dict(sorted(self.expected_quarantine.items())),
            "bytes": self.bytes,
            "mean_event_bytes": round(self.bytes / self.produced, 1) if self.produced else 0,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(rate, 1) if rate else None,
            "megabytes_per_second": round(self.bytes / self.seconds / 1e6, 2) if self.seconds else None,
            "delivery_failures": self.delivery_failures,
        }
