"""A corpus of bad (and deceptively good) input: each case is the raw bytes of one Kafka record and what Braid must
make of it, the exact quarantine reason of `schemas.validation.REASONS` or "valid".

Valid baselines are derived from the contract files (every field of each type and version, or the required ones
only); the bad cases break them one way each. Cases whose point is the exact bytes (truncation, encodings, NaN,
nesting, padding) are written as bytes. JSON is written with the standard library, not with the decoder under test.

Events are dated relative to `now`: the same corpus serves unit tests at a fixed instant and the pipeline test at the
wall clock. Event times keep well away from the lateness and skew limits, so a few minutes between building the
corpus and the speed layer reading it change no outcome.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from schemas.contracts import Contract, FieldSpec, default_contracts, rules

VALID = "valid"
# Examples tried, in order, for a string field with a `pattern`; a contract with a pattern none of them matches makes
# `example_value` fail loudly, so the corpus is extended rather than silently wrong.
PATTERN_EXAMPLES = ("DE", "US", "x", "X1", "1")
KEY = b"corpus"  # one Kafka key for every raw record: one partition, so "the first copy" is plain produce order


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expected: str  # a reason of schemas.validation.REASONS, or VALID
    # Where the entry point checks the decoded event rather than the bytes (HTTP ingest, EventProducer.send), and
    # that gives another outcome: whitespace padding is gone once decoded and encoded compactly again.
    event_expected: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def as_event_expected(self) -> str:
        return self.event_expected or self.expected

    @property
    def event(self) -> Any:
        """The event the bytes stand for (standard library decoding), for the valid cases."""
        return json.loads(self.raw.decode("utf-8"))


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8, non-ASCII kept as is (the shape producers send)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def example_value(spec: FieldSpec) -> Any:
    """A value inside the field's contract: its first enum value, a pattern example, or a value within the bounds."""
    if spec.enum is not None:
        return spec.enum[0]
    if spec.type == "string":
        if spec.pattern is not None:
            for candidate in PATTERN_EXAMPLES:
                if re.search(spec.pattern, candidate):
                    return candidate
            raise ValueError(f"no example matches payload.{spec.name}'s pattern {spec.pattern!r}: add one to PATTERN_EXAMPLES")
        text = f"{spec.name}-1"
        text = text.ljust(spec.min_length or 0, "x")
        return text[: spec.max_length] if spec.max_length is not None else text
    if spec.type in ("integer", "number"):
        value = 1999 if spec.type == "integer" else 19.5
        if spec.minimum is not None:
            value = max(value, spec.minimum)
        if spec.maximum is not None:
            value = min(value, spec.maximum)
        return value
    if spec.type == "boolean":
        return True
    return {"k": "v"}  # map of strings


def baseline(contract: Contract, now: datetime, event_id: str, *, required_only: bool = False) -> dict[str, Any]:
    payload = {spec.name: example_value(spec) for spec in contract.fields if spec.required or not required_only}
    return {
        "event_id": event_id,
        "event_type": contract.event_type,
        "schema_version": contract.version,
        "event_time": rfc3339(now - timedelta(seconds=30)),
        "source": "corpus",
        "payload": payload,
    }


def changed(event: dict[str, Any], path: str, value: Any = ..., *, drop: bool = False) -> dict[str, Any]:
    """A deep copy of `event` with the field at dotted `path` set to `value` (or dropped)."""
    event = copy.deepcopy(event)
    *parents, last = path.split(".")
    target = event
    for part in parents:
        target = target[part]
    if drop:
        del target[last]
    else:
        target[last] = value
    return event


def _padded_to(event: dict[str, Any], size: int) -> dict[str, Any]:
    """`event` (page_view v2) with attribute values grown until its compact JSON is exactly `size` bytes: '€' is 3
    bytes of UTF-8 and 'x' one, so any size from here to about 100 KB is reachable within the contract's limits."""
    event = copy.deepcopy(event)
    spec = default_contracts()["page_view"][2].field("attributes")
    attributes: dict[str, str] = {}
    event["payload"]["attributes"] = attributes
    for index in range(spec.max_properties):
        if len(dumps(event)) >= size:
            break
        attributes[f"a{index:02d}"] = ""
        missing = size - len(dumps(event))
        if missing <= 0:
            break
        euros = min(missing // 3, spec.value_max_length)
        attributes[f"a{index:02d}"] = "€" * euros + "x" * min(missing - 3 * euros, spec.value_max_length - euros)
    if len(dumps(event)) != size:
        raise ValueError(f"cannot pad the event to {size} bytes")
    return event


def corpus(now: datetime, tag: str = "c") -> list[Case]:
    """Every case, event ids prefixed with `tag` (letters and digits) so that several copies of the corpus can share
    a topic without sharing an id."""
    registry = default_contracts()
    limit = rules().max_event_bytes
    ids = iter(range(1, 10_000))

    def new_id() -> str:
        return f"{tag}-{next(ids)}"

    def payment(**payload: Any) -> dict[str, Any]:
        event = baseline(registry["payment"][1], now, new_id())
        event["payload"].update(payload)
        return event

    page_view_v1 = baseline(registry["page_view"][1], now, "unused")
    page_view_v2 = baseline(registry["page_view"][2], now, "unused")

    def page_view(version: int = 2, **payload: Any) -> dict[str, Any]:
        event = copy.deepcopy(page_view_v2 if version == 2 else page_view_v1) | {"event_id": new_id()}
        event["payload"].update(payload)
        return event

    cases: list[Case] = []

    def add(name: str, value: dict[str, Any] | bytes, expected: str, event_expected: str | None = None, tags: tuple[str, ...] = ()) -> None:
        raw = value if isinstance(value, bytes) else dumps(value)
        cases.append(Case(name, raw, expected, event_expected, frozenset(tags)))

    # -- valid: every type and version, whole and minimal; strings that must survive unchanged -----------------------
    for event_type, versions in sorted(registry.items()):
        for version, contract in sorted(versions.items()):
            add(f"{event_type} v{version}, every field", baseline(contract, now, new_id()), VALID)
            add(f"{event_type} v{version}, required fields only", baseline(contract, now, new_id(), required_only=True), VALID)
    add("optional field null", payment(method=None), VALID)
    add(
        "CQL and SQL in the strings",
        payment(
            user_id="x'; DROP TABLE speed_views; --",
            merchant_id='m"); DELETE FROM batch_views WHERE ("1"="1',
            payment_id="Robert'); DROP TABLE Students;--",
        ),
        VALID,
    )
    add(
        "CQL in a view key, quotes and control characters",
        page_view(
            url="https://shop.example/?q=' OR '1'='1'; DROP KEYSPACE braid; --\\",
            title='"quoted" \'single\' `back` \\ back\\slash\n\t\r\x00\x1f end',
            attributes={"sql": "1; TRUNCATE speed_views", "json": '{"event_id": "forged"}', "": "empty key"},
        ),
        VALID,
    )
    # Spark's to_json (Jackson) writes \u001F where Python's json writes \u001f: a view key with such a character
    # is where the two could disagree.
    add("control characters in a view key", page_view(url="https://shop.example/\x0b\x1f\x7f/end"), VALID)
    add(
        "unicode: accents, emoji, right-to-left, line separators",
        page_view(url="https://shop.example/café/😀", user_id="ユーザー-1", title="مرحبا \u2028\u2029 \ufeff"),
        VALID,
    )
    escaped = dumps(payment(user_id="ASCII-only")).replace(b'"ASCII-only"', b'"\\u00e9\\ud83d\\ude00\\u0000\\/"')
    add("unicode escapes and a surrogate pair", escaped, VALID)
    add("escaped field name", dumps(payment()).replace(b'"event_id"', b'"event\\u005fid"'), VALID)
    add("pretty-printed with CR LF and tabs", json.dumps(payment(), indent="\t").replace("\n", "\r\n").encode(), VALID)
    add("fields in another order", dumps(dict(reversed(list(payment().items())))), VALID)
    add("six days late", payment() | {"event_time": rfc3339(now - timedelta(days=6))}, VALID)
    add("a minute ahead", payment() | {"event_time": rfc3339(now + timedelta(minutes=1))}, VALID)
    add("offset +14:00", payment() | {"event_time": (now - timedelta(minutes=2)).astimezone(_tz(14)).isoformat()}, VALID)
    west = (now - timedelta(minutes=2)).astimezone(_tz(-12)).isoformat(timespec="microseconds")
    add("offset -12:00, microseconds", payment() | {"event_time": west}, VALID)
    add("offset +18:00, the largest Spark reads", payment() | {"event_time": (now - timedelta(minutes=2)).astimezone(_tz(18)).isoformat()}, VALID)
    amount = registry["payment"][1].field("amount")
    add("amount at its minimum", payment(amount=amount.minimum), VALID)
    add("amount at its maximum", payment(amount=amount.maximum), VALID)
    url = registry["page_view"][2].field("url")
    add("url at its maxLength", page_view(url="u" * url.max_length), VALID)
    first = payment(amount=100, user_id="dup-user")
    add("duplicate event_id: the first copy", first, VALID, tags=("duplicate",))
    add("duplicate event_id: a second copy, another payload", changed(first, "payload.amount", 99_999), VALID, tags=("duplicate",))
    duplicate_key = dumps(payment(amount=500)).replace(b'"amount":500', b'"amount":-5,"amount":500')
    add("a field given twice: the last one counts", duplicate_key, VALID)
    add("exactly max_event_bytes", _padded_to(page_view(), limit), VALID)
    add("padded with whitespace to just under the limit", dumps(payment()) + b" " * (limit - len(dumps(payment())) - 8), VALID)

    # -- not JSON ---------------------------------------------------------------------------------------------------
    whole = dumps(payment())
    add("not JSON at all", b"{not json", "unparseable")
    add("empty record", b"", "unparseable", tags=("empty",))
    add("only whitespace", b" \r\n\t ", "unparseable", tags=("empty",))
    add("truncated in the middle", whole[: len(whole) // 2], "unparseable")
    add("truncated by one byte", whole[:-1], "unparseable")
    add("trailing garbage", whole + b"x", "unparseable")
    add("two events in one record", whole + whole, "unparseable")
    add("NaN amount", whole.replace(b'"amount":1999', b'"amount":NaN'), "unparseable")
    add("Infinity amount", whole.replace(b'"amount":1999', b'"amount":Infinity'), "unparseable")
    add("-Infinity amount", whole.replace(b'"amount":1999', b'"amount":-Infinity'), "unparseable")
    add("a number beyond a double (1e400)", whole.replace(b'"amount":1999', b'"amount":1e400'), "unparseable")
    add("single quotes", whole.replace(b'"', b"'"), "unparseable")
    add("trailing comma", whole[:-1] + b",}", "unparseable")
    add("a comment", b"/* hi */" + whole, "unparseable")
    add("UTF-8 byte order mark", b"\xef\xbb\xbf" + whole, "unparseable")
    add("lone surrogate escape", whole.replace(b'"source":"corpus"', b'"source":"\\ud800"'), "unparseable")
    add("raw newline inside a string", whole.replace(b'"source":"corpus"', b'"source":"cor\npus"'), "unparseable")
    add("nested 5000 deep (under 11 KB)", b"[" * 5000 + b"]" * 5000, "unparseable")
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    add("nested 5000 deep inside the payload", whole.replace(b'"payload":', b'"payload":' + deep + b',"x":', 1), "unparseable")

    # -- not UTF-8 --------------------------------------------------------------------------------------------------
    add("UTF-16", json.dumps(payment()).encode("utf-16"), "not_utf8")
    add("Latin-1 text", whole.replace(b'"source":"corpus"', '"source":"Zürich"'.encode("latin-1")), "not_utf8")
    add("overlong encoding of '/'", whole.replace(b'"source":"corpus"', b'"source":"\xc0\xaf"'), "not_utf8")
    add("UTF-8-encoded surrogate (CESU-8)", whole.replace(b'"source":"corpus"', b'"source":"\xed\xa0\x80"'), "not_utf8")
    add("truncated multi-byte character", whole.replace(b'"source":"corpus"', b'"source":"caf\xc3"'), "not_utf8")
    add("invalid byte outside any string", b"\xff" + whole, "not_utf8")

    # -- JSON, but not an object -------------------------------------------------------------------------------------
    add("an array of events", b"[" + whole + b"]", "not_an_object")
    for name, raw in (("a string", b'"payment"'), ("a number", b"42"), ("null", b"null"), ("true", b"true")):
        add(f"just {name}", raw, "not_an_object")

    # -- missing fields --------------------------------------------------------------------------------------------
    for name in ("event_id", "event_type", "schema_version", "event_time", "source", "payload"):
        add(f"no {name}", changed(payment(), name, drop=True), "missing_field")
    for spec in registry["payment"][1].fields:
        if spec.required:
            add(f"no payload.{spec.name}", changed(payment(), f"payload.{spec.name}", drop=True), "missing_field")
    add("required field null", payment(currency=None), "missing_field")
    add("payload null", payment() | {"payload": None}, "missing_field")
    add("event_id spelt Event_Id", {("Event_Id" if k == "event_id" else k): v for k, v in payment().items()}, "missing_field")
    add("an empty object", b"{}", "missing_field")

    # -- wrong types ------------------------------------------------------------------------------------------------
    add("event_id a number", payment() | {"event_id": 17}, "wrong_type")
    add("event_type a list", payment() | {"event_type": ["payment"]}, "wrong_type")
    add("source an object", payment() | {"source": {"app": "web"}}, "wrong_type")
    add("schema_version a string", payment() | {"schema_version": "1"}, "wrong_type")
    add("schema_version 1.0", payment() | {"schema_version": 1.0}, "wrong_type")
    add("schema_version true", payment() | {"schema_version": True}, "wrong_type")
    add("amount a string", payment(amount="1999"), "wrong_type")
    add("amount 1999.0", payment(amount=1999.0), "wrong_type")
    add("amount true", payment(amount=True), "wrong_type")
    add("user_id a number", payment(user_id=12345), "wrong_type")
    add("payload a list", payment() | {"payload": [1, 2]}, "wrong_type")
    add("payload a string", payment() | {"payload": "{}"}, "wrong_type")
    add("attributes a map of numbers", page_view(attributes={"a": 1}), "wrong_type")
    add("attributes a list", page_view(attributes=["a"]), "wrong_type")
    add("duration_ms a string", page_view(duration_ms="12"), "wrong_type")
    add("event_time a number", payment() | {"event_time": 1764000000}, "wrong_type")
    add("event_time without an offset", payment() | {"event_time": (now - timedelta(minutes=1)).replace(tzinfo=None).isoformat()}, "wrong_type")
    add("event_time as a date only", payment() | {"event_time": now.date().isoformat()}, "wrong_type")
    add("event_time on 30 February", payment() | {"event_time": "2026-02-30T10:00:00Z"}, "wrong_type")
    add("event_time in words", payment() | {"event_time": "yesterday"}, "wrong_type")
    add("event_time offset +23:59", payment() | {"event_time": (now - timedelta(minutes=2)).astimezone(_tz(23, 59)).isoformat()}, "wrong_type")
    add("event_time with a newline after it", payment() | {"event_time": rfc3339(now) + "\n"}, "wrong_type")

    # -- unexpected fields ------------------------------------------------------------------------------------------
    add("an extra envelope field", payment() | {"trace_id": "t-1"}, "unexpected_field")
    add("an extra payload field", payment(coupon="FREE"), "unexpected_field")
    add("an extra payload field, null", payment(coupon=None), "unexpected_field")
    add("a v2 field in a v1 event", page_view(1, attributes={"a": "b"}), "unexpected_field")

    # -- unknown type or version -------------------------------------------------------------------------------------
    add("unknown event_type", payment() | {"event_type": "refund"}, "unknown_event_type")
    add("event_type in capitals", payment() | {"event_type": "PAYMENT"}, "unknown_event_type")
    add("event_type empty", payment() | {"event_type": ""}, "unknown_event_type")
    add("event_type with CQL", payment() | {"event_type": "payment'; DROP TABLE quarantine; --"}, "unknown_event_type")
    for version in (0, -1, max(registry["payment"]) + 1, 2**70):
        add(f"schema_version {version}", payment() | {"schema_version": version}, "unknown_schema_version")

    # -- values outside the contract ---------------------------------------------------------------------------------
    add("negative amount", payment(amount=-500), "invalid_value")
    add("zero amount", payment(amount=0), "invalid_value")
    add("amount one over its maximum", payment(amount=amount.maximum + 1), "invalid_value")
    add("absurd amount (10^15)", payment(amount=10**15), "invalid_value")
    add("amount over 64 bits", payment(amount=2**64 + 1), "invalid_value")
    add("amount with 300 digits", payment(amount=10**300), "invalid_value")
    add("unknown currency", payment(currency="XXX"), "invalid_value")
    add("currency in lower case", payment(currency="eur"), "invalid_value")
    add("country spelt out", payment(country="Germany"), "invalid_value")
    add("country with a newline", payment(country="DE\n"), "invalid_value")
    add("unknown device", page_view(device="smart-fridge"), "invalid_value")
    add("event_id with quotes and CQL", payment() | {"event_id": "x'; DROP TABLE speed_views; --"}, "invalid_value")
    add("event_id with a newline", payment() | {"event_id": "evt-1\n"}, "invalid_value")
    add("event_id empty", payment() | {"event_id": ""}, "invalid_value")
    add("event_id 65 characters", payment() | {"event_id": "e" * 65}, "invalid_value")
    add("source empty", payment() | {"source": ""}, "invalid_value")
    add("source 65 characters", payment() | {"source": "s" * 65}, "invalid_value")
    add("url empty", page_view(url=""), "invalid_value")
    add("url one over its maxLength (a huge string, still under max_event_bytes)", page_view(url="u" * (url.max_length + 1)), "invalid_value")
    add("negative duration", page_view(duration_ms=-1), "invalid_value")
    attributes = registry["page_view"][2].field("attributes")
    add("one attribute too many", page_view(attributes={f"a{i}": "v" for i in range(attributes.max_properties + 1)}), "invalid_value")
    add("an attribute value one too long", page_view(attributes={"a": "v" * (attributes.value_max_length + 1)}), "invalid_value")

    # -- absurd times -----------------------------------------------------------------------------------------------
    add("event_time in 1970", payment() | {"event_time": "1970-01-01T00:00:00Z"}, "absurd_time")
    add("event_time in 2200", payment() | {"event_time": "2200-01-01T00:00:00Z"}, "absurd_time")
    add("event_time in year 1", payment() | {"event_time": "0001-01-01T00:00:00Z"}, "absurd_time")
    add("event_time in year 9999", payment() | {"event_time": "9999-12-31T23:59:59.999999Z"}, "absurd_time")
    add("eight days late", payment() | {"event_time": rfc3339(now - timedelta(days=8))}, "absurd_time")
    add("an hour ahead", payment() | {"event_time": rfc3339(now + timedelta(hours=1))}, "absurd_time")

    # -- oversized --------------------------------------------------------------------------------------------------
    add("one byte over max_event_bytes", _padded_to(page_view(), limit + 1), "oversized")
    add("a 70 KB source", payment() | {"source": "s" * 70_000}, "oversized")
    add("a 512 KB url (huge payload)", page_view(url="https://shop.example/" + "p" * 512 * 1024), "oversized")
    nul_attributes = {f"a{i}": "\x00" * attributes.value_max_length for i in range(attributes.max_properties)}
    add("32 attributes of 1024 NUL characters: within the contract, 200 KB encoded", page_view(attributes=nul_attributes), "oversized")
    # The decoded event is small: an entry point that checks it and sends it compact (ingest, EventProducer.send)
    # accepts it; the bytes as they are must be quarantined.
    add("a valid event padded with whitespace over the limit", dumps(payment()) + b" " * limit, "oversized", VALID)
    # Size comes first for the bytes; an endpoint that takes a batch must decode it before it can measure an event.
    add("100 KB of garbage (the size is checked first)", b"{x" * 50_000, "oversized", "unparseable")
    return cases


def _tz(hours: int, minutes: int = 0) -> timezone:
    sign = -1 if hours < 0 else 1
    return timezone(sign * timedelta(hours=abs(hours), minutes=minutes))
