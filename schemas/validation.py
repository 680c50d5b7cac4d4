"""Validation of raw events against their contracts, with a precise reason for every rejection.

The reasons are Braid's quarantine vocabulary, shared by the producers, the HTTP ingest endpoint and the speed layer:

    oversized               the raw record is larger than rules.toml's max_event_bytes
    not_utf8                the bytes are not UTF-8
    unparseable             not JSON (NaN and Infinity are not JSON either)
    not_an_object           JSON, but not an object
    missing_field           a required envelope or payload field is absent (or null)
    wrong_type              a field has the wrong JSON type
    unexpected_field        a field the contract does not declare
    unknown_event_type      no contract for event_type
    unknown_schema_version  the event type has no such version
    invalid_value           a value outside its contract: enum, pattern, length, range
    absurd_time             event_time too far in the past (max lateness) or in the future (max skew)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from schemas.contracts import Contract, FieldSpec, Rules

REASONS = (
    "oversized", "not_utf8", "unparseable", "not_an_object", "missing_field", "wrong_type", "unexpected_field",
    "unknown_event_type", "unknown_schema_version", "invalid_value", "absurd_time",
)  # fmt: skip
_INT64 = (-(2**63), 2**63 - 1)
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # fullmatch: Python's `$` would let a trailing newline through
_decode = msgspec.json.Decoder().decode


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class InvalidEvent(ValueError):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})")
_MAX_OFFSET = timedelta(hours=18)  # java.time.ZoneOffset's range: Spark reads no timestamp with a larger offset


def parse_event_time(text: str) -> datetime | None:
    """RFC 3339 with an offset (`Z` or `+hh:mm`, at most 18 hours), at most microseconds; None when it is not one.

    Deliberately strict: the speed layer turns the same text into a Spark timestamp, and both must agree. RFC 3339
    allows offsets up to 23:59, Java (so Spark) only up to 18:00: a valid event whose time Spark cannot read would
    fail the speed layer's micro-batch on the master dataset's non-null event_time.
    """
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = parsed.utcoffset()
    return parsed if offset is not None and abs(offset) <= _MAX_OFFSET else None


def json_schema_pattern(pattern: str) -> re.Pattern[str]:
    r"""A contract's `pattern` compiled with JSON Schema's (ECMA-262) meaning, as far as Braid's patterns go.

    ECMA-262's `$` matches only at the end of the text; Python's also matches before a final newline, so "DE\n" would
    pass `^[A-Z]{2}$`. An unescaped `$` outside a character class becomes `\Z`. ECMA-262's `\d` and `\w` are
    ASCII-only, hence re.ASCII.
    """
    translated, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        translated.append(char)
    return re.compile("".join(translated), re.ASCII)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, dict)  # map


def _field_check(spec: FieldSpec) -> Callable[[Any], Rejection | None]:
    """One compiled check for a present, non-null payload field."""
    where = f"payload.{spec.name}"
    pattern = json_schema_pattern(spec.pattern) if spec.pattern else None
    enum = frozenset(spec.enum) if spec.enum is not None else None

    def check(value: Any) -> Rejection | None:
        if not _type_ok(value, spec.type):
            return Rejection("wrong_type", f"{where} must be {'an object of strings' if spec.type == 'map' else spec.type}, got {type(value).__name__}")
        if spec.type == "map":
            if spec.max_properties is not None and len(value) > spec.max_properties:
                return Rejection("invalid_value", f"{where} has {len(value)} entries, at most {spec.max_properties}")
            for item in value.values():
                if not isinstance(item, str):
                    return Rejection("wrong_type", f"{where} values must be strings, got {type(item).__name__}")
                if spec.value_max_length is not None and len(item) > spec.value_max_length:
                    return Rejection("invalid_value", f"{where} has a value longer than {spec.value_max_length}")
            return None
        if spec.type == "integer" and not _INT64[0] <= value <= _INT64[1]:
            return Rejection("invalid_value", f"{where} is outside the 64-bit integer range")
        if spec.type == "number" and not math.isfinite(value):
            return Rejection("invalid_value", f"{where} is not a finite number")
        if enum is not None and value not in enum:
            shown = value if len(str(value)) <= 40 else f"{str(value)[:40]}..."
            return Rejection("invalid_value", f"{where} is {shown!r}, expected one of {sorted(enum)}")
        if spec.type == "string":
            if spec.min_length is not None and len(value) < spec.min_length:
                return Rejection("invalid_value", f"{where} is shorter than {spec.min_length}")
            if spec.max_length is not None and len(value) > spec.max_length:
                return Rejection("invalid_value", f"{where} is longer than {spec.max_length} ({len(value)})")
            if pattern is not None and not pattern.search(value):
                return Rejection("invalid_value", f"{where} does not match {spec.pattern}")
        if spec.minimum is not None and value < spec.minimum:
            return Rejection("invalid_value", f"{where} is {value}, below the minimum {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            return Rejection("invalid_value", f"{where} is {value}, above the maximum {spec.maximum}")
        return None

    return check


class _CompiledContract:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.checks = {spec.name: _field_check(spec) for spec in contract.fields}
        self.required = [spec.name for spec in contract.fields if spec.required]

    def check_payload(self, payload: Any) -> Rejection | None:
        if not isinstance(payload, dict):
            return Rejection("wrong_type", f"payload must be an object, got {type(payload).__name__}")
        for name in self.required:
            if payload.get(name) is None:
                return Rejection("missing_field", f"payload.{name}")
        for name, value in payload.items():
            check = self.checks.get(name)
            if check is None:
                return Rejection("unexpected_field", f"payload.{str(name)[:64]}")
            if value is not None:
                rejection = check(value)
                if rejection is not None:
                    return rejection
        return None


class Validator:
    """Checks events against a contract registry and the time and size rules. Thread-safe; build once, reuse."""

    def __init__(self, registry: dict[str, dict[int, Contract]], rules: Rules) -> None:
        self._compiled = {
            event_type: {version: _CompiledContract(contract) for version, contract in versions.items()}
            for event_type, versions in registry.items()
        }
        self._rules = rules
        self._lateness = timedelta(seconds=rules.max_lateness_seconds)
        self._skew = timedelta(seconds=rules.max_future_skew_seconds)

    def contract_for(self, event: dict[str, Any]) -> Contract:
        return self._compiled[event["event_type"]][event["schema_version"]].contract

    def check_size(self, size: int) -> Rejection | None:
        """None when a record of `size` bytes is within rules.toml's max_event_bytes, else why not."""
        if size > self._rules.max_event_bytes:
            return Rejection("oversized", f"{size} bytes, at most {self._rules.max_event_bytes}")
        return None

    def check_bytes(self, raw: bytes, now: datetime) -> tuple[dict[str, Any] | None, Rejection | None]:
        """(event, None) when `raw` is a valid event, else (None, why)."""
        rejection = self.check_size(len(raw))
        if rejection is not None:
            return None, rejection
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return None, Rejection("not_utf8", f"invalid byte at position {error.start}")
        try:
            event = _decode(raw)
        except msgspec.DecodeError as error:
            return None, Rejection("unparseable", str(error)[:200])
        except RecursionError:  # msgspec's decoder recurses per level: a 2 KB record of '[' would escape as a crash
            return None, Rejection("unparseable", "nested too deeply")
        rejection = self.check(event, now)
        return (None, rejection) if rejection else (event, None)

    def check(self, event: Any, now: datetime) -> Rejection | None:
        """None when `event` (decoded JSON) is valid at time `now`, else why not."""
        if not isinstance(event, dict):
            return Rejection("not_an_object", f"the event is a JSON {type(event).__name__}")
        for name in ("event_id", "event_type", "schema_version", "event_time", "source", "payload"):
            if event.get(name) is None:
                return Rejection("missing_field", name)
        for name in ("event_id", "event_type", "event_time", "source"):
            if not isinstance(event[name], str):
                return Rejection("wrong_type", f"{name} must be string, got {type(event[name]).__name__}")
        version = event["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            return Rejection("wrong_type", f"schema_version must be integer, got {type(version).__name__}")
        if len(event) > 6:
            extra = sorted(set(event) - {"event_id", "event_type", "schema_version", "event_time", "source", "payload"})
            return Rejection("unexpected_field", str(extra[0])[:64])
        if not _EVENT_ID.fullmatch(event["event_id"]):
            return Rejection("invalid_value", "event_id must be 1 to 64 of A-Z a-z 0-9 _ . : -")
        if not 1 <= len(event["source"]) <= 64:
            return Rejection("invalid_value", "source must be 1 to 64 characters")
        versions = self._compiled.get(event["event_type"])
        if versions is None:
            return Rejection("unknown_event_type", event["event_type"][:64])
        compiled = versions.get(version)
        if compiled is None:
            return Rejection("unknown_schema_version", f"{event['event_type']} v{version} (known: {sorted(versions)})")
        event_time = parse_event_time(event["event_time"])
        if event_time is None:
            return Rejection("wrong_type", "event_time must be an RFC 3339 date-time with an offset")
        if event_time < now - self._lateness or event_time > now + self._skew:
            return Rejection("absurd_time", f"event_time {event['event_time'][:40]} is outside [now - {self._lateness}, now + {self._skew}]")
        return compiled.check_payload(event["payload"])
