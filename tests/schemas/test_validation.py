"""Every kind of bad event is rejected with its reason; good events pass; the JSON Schema library agrees."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import jsonschema
import pytest

from schemas.contracts import default_contracts, rules
from schemas.validation import Validator

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PAYMENT = {
    "event_id": "evt-1",
    "event_type": "payment",
    "schema_version": 1,
    "event_time": "2026-11-24T11:59:30.250Z",
    "source": "checkout-web",
    "payload": {
        "payment_id": "pay-1", "user_id": "user-9", "merchant_id": "merchant-3", "amount": 1999,
        "currency": "EUR", "status": "captured", "method": "card", "country": "DE",
    },
}  # fmt: skip
PAGE_VIEW_V2 = {
    "event_id": "evt-2",
    "event_type": "page_view",
    "schema_version": 2,
    "event_time": "2026-11-24T13:00:00+01:00",
    "source": "ios-app",
    "payload": {
        "url": "https://shop.example/p/1", "user_id": "user-1", "session_id": "s-1", "country": "US", "device": "mobile",
        "attributes": {"experiment": "b"}, "load_ms": 120,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(default_contracts(), rules())


def _with(base: dict, path: str, value=..., drop: bool = False) -> dict:
    event = copy.deepcopy(base)
    *parents, last = path.split(".")
    target = event
    for part in parents:
        target = target[part]
    if drop:
        del target[last]
    else:
        target[last] = value
    return event


@pytest.mark.parametrize("event", [PAYMENT, PAGE_VIEW_V2, _with(PAYMENT, "event_time", "2026-11-25T05:59:00+18:00"), _with(PAYMENT, "payload.method", drop=True), _with(PAYMENT, "payload.method", None)])
def test_valid_events_pass_and_the_json_schema_library_agrees(validator: Validator, event: dict) -> None:
    assert validator.check(event, NOW) is None
    assert validator.check_bytes(json.dumps(event).encode(), NOW) == (event, None)
    schema = default_contracts()[event["event_type"]][event["schema_version"]].json_schema()
    document = {**event, "payload": {k: v for k, v in event["payload"].items() if v is not None}}
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())


CASES = [
    ("missing envelope field", _with(PAYMENT, "event_id", drop=True), "missing_field", "event_id"),
    ("missing payload field", _with(PAYMENT, "payload.amount", drop=True), "missing_field", "payload.amount"),
    ("null required field", _with(PAYMENT, "payload.currency", None), "missing_field", "payload.currency"),
    ("amount as a string", _with(PAYMENT, "payload.amount", "19.99"), "wrong_type", "payload.amount must be integer, got str"),
    ("amount as a float", _with(PAYMENT, "payload.amount", 19.99), "wrong_type", "payload.amount must be integer, got float"),
    ("amount as a boolean", _with(PAYMENT, "payload.amount", True), "wrong_type", "payload.amount must be integer, got bool"),
    ("version as a string", _with(PAYMENT, "schema_version", "1"), "wrong_type", "schema_version must be integer"),
    ("payload as a list", _with(PAYMENT, "payload", [1]), "wrong_type", "payload must be an object"),
    ("time without zone", _with(PAYMENT, "event_time", "2026-11-24T11:59:30"), "wrong_type", "event_time must be an RFC 3339"),
    ("time as garbage", _with(PAYMENT, "event_time", "yesterday"), "wrong_type", "event_time must be an RFC 3339"),
    ("offset beyond 18 hours", _with(PAYMENT, "event_time", "2026-11-24T23:59:00+23:59"), "wrong_type", "event_time must be an RFC 3339"),
    ("newline after time", _with(PAYMENT, "event_time", "2026-11-24T11:59:30Z\n"), "wrong_type", "event_time must be an RFC 3339"),
    ("extra payload field", _with(PAYMENT, "payload.coupon", "X"), "unexpected_field", "payload.coupon"),
    ("extra envelope field", _with(PAYMENT, "trace", "t"), "unexpected_field", "trace"),
    ("v2 field in v1", _with(PAGE_VIEW_V2, "schema_version", 1), "unexpected_field", "payload.attributes"),
    ("unknown type", _with(PAYMENT, "event_type", "refund"), "unknown_event_type", "refund"),
    ("unknown version", _with(PAYMENT, "schema_version", 7), "unknown_schema_version", "payment v7 (known: [1])"),
    ("negative amount", _with(PAYMENT, "payload.amount", -5), "invalid_value", "payload.amount is -5, below the minimum 1"),
    ("absurd amount", _with(PAYMENT, "payload.amount", 10**12), "invalid_value", "above the maximum 100000000"),
    ("huge integer", _with(PAYMENT, "payload.amount", 2**70), "invalid_value", "outside the 64-bit integer range"),
    ("unknown currency", _with(PAYMENT, "payload.currency", "XXX"), "invalid_value", "payload.currency is 'XXX'"),
    ("bad country", _with(PAYMENT, "payload.country", "germany"), "invalid_value", "payload.country does not match"),
    ("empty user", _with(PAYMENT, "payload.user_id", ""), "invalid_value", "payload.user_id is shorter than 1"),
    ("huge string", _with(PAYMENT, "payload.user_id", "u" * 5000), "invalid_value", "payload.user_id is longer than 64"),
    ("quotes in event id", _with(PAYMENT, "event_id", "x'; DROP TABLE"), "invalid_value", "event_id must be"),
    ("newline after event id", _with(PAYMENT, "event_id", "evt-1\n"), "invalid_value", "event_id must be"),
    ("newline after country", _with(PAYMENT, "payload.country", "DE\n"), "invalid_value", "payload.country does not match"),
    ("map of numbers", _with(PAGE_VIEW_V2, "payload.attributes", {"a": 1}), "wrong_type", "payload.attributes values must be strings"),
    ("time in 1970", _with(PAYMENT, "event_time", "1970-01-01T00:00:00Z"), "absurd_time", "event_time 1970-01-01T00:00:00Z"),
    ("time in 2200", _with(PAYMENT, "event_time", "2200-01-01T00:00:00Z"), "absurd_time", "event_time 2200-01-01"),
    ("ten minutes ahead", _with(PAYMENT, "event_time", "2026-11-24T12:10:00Z"), "absurd_time", "outside"),
]


@pytest.mark.parametrize(("case", "event", "reason", "detail"), CASES, ids=[case[0] for case in CASES])
def test_bad_events_are_rejected_with_their_reason(validator: Validator, case: str, event: dict, reason: str, detail: str) -> None:
    rejection = validator.check(event, NOW)
    assert rejection is not None and rejection.reason == reason
    assert detail in rejection.detail
    event_bytes = json.dumps(event).encode()
    assert validator.check_bytes(event_bytes, NOW)[1] == rejection


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "unparseable"),
        (json.dumps(PAYMENT).encode()[:40], "unparseable"),
        (json.dumps(PAYMENT).encode().replace(b"1999", b"NaN"), "unparseable"),
        (json.dumps(PAYMENT).encode().replace(b"1999", b"Infinity"), "unparseable"),
        (b"", "unparseable"),
        (json.dumps(PAYMENT).encode().replace(b"checkout-web", b"checkout-\xff\xfe"), "not_utf8"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"[" * 5000 + b"]" * 5000, "unparseable"),  # nested deeper than the decoder recurses: a rejection, not a crash
        (b'{"payload":' * 5000 + b"1" + b"}" * 5000, "unparseable"),
        (json.dumps(_with(PAYMENT, "source", "s" * 70_000)).encode(), "oversized"),
    ],
)
def test_bad_bytes_are_rejected_with_their_reason(validator: Validator, raw: bytes, reason: str) -> None:
    event, rejection = validator.check_bytes(raw, NOW)
    assert event is None and rejection is not None and rejection.reason == reason


# Time rules are Braid's own (and the library's date-time check needs an extra package): the other cases are plain
# JSON Schema, so an independent implementation must reject them as well. Except a newline at the end: the library
# matches `pattern` with Python's re, whose `$` also matches before a final newline (ECMA-262's, which JSON Schema means,
# does not).
STRUCTURAL = [
    c for c in CASES
    if c[2] in ("missing_field", "wrong_type", "unexpected_field", "invalid_value") and "event_time" not in c[3] and not c[0].startswith("newline")
]  # fmt: skip


@pytest.mark.parametrize(("case", "event", "reason", "detail"), STRUCTURAL, ids=[case[0] for case in STRUCTURAL])
def test_the_json_schema_library_rejects_the_structural_cases_too(case: str, event: dict, reason: str, detail: str) -> None:
    contract = default_contracts()[event["event_type"]].get(event["schema_version"]) if isinstance(event["schema_version"], int) else None
    contract = contract or default_contracts()["payment"][1]
    document = {**event}
    if isinstance(event.get("payload"), dict):
        document["payload"] = {k: v for k, v in event["payload"].items() if v is not None}
    if reason == "missing_field" and case == "null required field":
        document = event  # null is not a string: the library rejects it as a type error
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, contract.json_schema(), format_checker=jsonschema.FormatChecker())
