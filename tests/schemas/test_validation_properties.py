"""Properties of the validator (hypothesis): it never raises, whatever it is given, and answers with a reason of the
vocabulary; events generated from the contract files are accepted (and the JSON Schema library agrees); one
mutation of a valid event is rejected with the reason that mutation calls for."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas.contracts import ENVELOPE_FIELDS, Contract, FieldSpec, default_contracts, rules
from schemas.validation import REASONS, Rejection, Validator

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REGISTRY = default_contracts()
CONTRACTS = [contract for versions in REGISTRY.values() for contract in versions.values()]
VALIDATOR = Validator(REGISTRY, rules())
EARLIEST = NOW - timedelta(seconds=rules().max_lateness_seconds)
LATEST = NOW + timedelta(seconds=rules().max_future_skew_seconds)
TOP_LEVEL = (*ENVELOPE_FIELDS, "payload")

# -- strategies: values inside a contract ------------------------------------------------------------------------


def field_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.enum is not None:
        return st.sampled_from(spec.enum)
    if spec.type == "string":
        low, high = spec.min_length or 0, spec.max_length if spec.max_length is not None else 10_000
        if spec.pattern is not None:
            return st.from_regex(re.compile(spec.pattern, re.ASCII), fullmatch=True).filter(lambda text: low <= len(text) <= high)
        return st.text(min_size=low, max_size=min(high, 40))
    if spec.type in ("integer", "number"):
        low = math.ceil(spec.minimum) if spec.minimum is not None else -(2**63)
        high = math.floor(spec.maximum) if spec.maximum is not None else 2**63 - 1
        integers = st.integers(low, high)
        return integers if spec.type == "integer" else integers | st.floats(low, high, allow_nan=False, allow_infinity=False)
    if spec.type == "boolean":
        return st.booleans()
    value = st.text(max_size=min(spec.value_max_length or 40, 40))
    return st.dictionaries(st.text(max_size=12), value, max_size=min(spec.max_properties or 5, 5))


@st.composite
def event_times(draw: st.DrawFn) -> str:
    """RFC 3339 inside [now - max lateness, now + max skew], at any offset Spark reads, in any precision."""
    instant = draw(st.datetimes(EARLIEST.replace(tzinfo=None) + timedelta(seconds=1), LATEST.replace(tzinfo=None) - timedelta(seconds=1)))
    offset = timezone(timedelta(minutes=draw(st.integers(-18 * 60, 18 * 60))))
    local = instant.replace(tzinfo=UTC).astimezone(offset)
    text = local.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "microseconds"])))
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


def events_of(contract: Contract) -> st.SearchStrategy[dict[str, Any]]:
    required = {spec.name: field_values(spec) for spec in contract.fields if spec.required}
    optional = {spec.name: field_values(spec) | st.none() for spec in contract.fields if not spec.required}
    return st.fixed_dictionaries(
        {
            "event_id": st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
            "event_type": st.just(contract.event_type),
            "schema_version": st.just(contract.version),
            "event_time": event_times(),
            "source": st.text(min_size=1, max_size=64),
            "payload": st.fixed_dictionaries(required, optional=optional),
        }
    )


valid_events = st.sampled_from(CONTRACTS).flatmap(lambda contract: st.tuples(st.just(contract), events_of(contract)))

# -- strategies: anything --------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20
)
# Objects shaped like events, so that arbitrary values reach the deeper checks too.
event_shaped = st.dictionaries(st.sampled_from(TOP_LEVEL) | st.text(max_size=8), json_values, max_size=8) | st.builds(
    lambda envelope, payload: {**envelope, "payload": payload},
    st.fixed_dictionaries({name: json_values | st.sampled_from(["payment", "page_view", 1, 2, "2026-11-24T11:59:00Z"]) for name in ENVELOPE_FIELDS}),
    st.dictionaries(st.sampled_from(sorted({spec.name for c in CONTRACTS for spec in c.fields})), json_values, max_size=6),
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A valid event's bytes cut, or with bytes spliced in: close to valid, which random bytes never are."""
    _, event = draw(valid_events)
    raw = _dumps(event)
    cut = draw(st.integers(0, len(raw)))
    return raw[:cut] + draw(st.binary(max_size=4)) + raw[cut + draw(st.integers(0, 3)) :]


def assert_an_answer(result: Rejection | None) -> None:
    assert result is None or (isinstance(result, Rejection) and result.reason in REASONS and isinstance(result.detail, str))


# -- properties ------------------------------------------------------------------------------------------------------


@given(st.binary(max_size=300) | damaged_bytes() | json_values.map(_dumps) | event_shaped.map(_dumps))
def test_any_bytes_get_an_answer_never_an_exception(raw: bytes) -> None:
    event, rejection = VALIDATOR.check_bytes(raw, NOW)
    assert (event is None) != (rejection is None)
    assert_an_answer(rejection)
    if event is not None:
        assert isinstance(event, dict)


@given(json_values | event_shaped)
def test_any_json_value_gets_an_answer_and_the_same_one_as_its_bytes(value: Any) -> None:
    rejection = VALIDATOR.check(value, NOW)
    assert_an_answer(rejection)
    assert VALIDATOR.check_bytes(_dumps(value), NOW)[1] == rejection


@given(valid_events)
def test_events_generated_from_the_contracts_are_accepted_unchanged(generated: tuple[Contract, dict]) -> None:
    contract, event = generated
    raw = json.dumps(event).encode()
    assume(len(raw) <= rules().max_event_bytes)
    assert VALIDATOR.check(event, NOW) is None
    assert VALIDATOR.check_bytes(raw, NOW) == (event, None)
    document = {**event, "payload": {name: value for name, value in event["payload"].items() if value is not None}}
    jsonschema.validate(document, contract.json_schema())  # an independent reading of the same contract agrees


# -- one mutation, one reason ------------------------------------------------------------------------------------------

Mutation = Callable[[st.DataObject, Contract, dict], str]
wrong_for = {
    "string": st.integers() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.lists(st.text(), max_size=2) | st.dictionaries(st.text(), st.text(), max_size=2),
    "integer": st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.text() | st.lists(st.integers(), max_size=2),
    "number": st.booleans() | st.text() | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(), st.integers(), max_size=2),
    "boolean": st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False) | st.lists(st.booleans(), max_size=2),
    "map": st.integers() | st.text() | st.lists(st.text(), max_size=2) | st.dictionaries(st.text(), st.integers() | st.none() | st.booleans(), min_size=1, max_size=2),
}


def drop_required(data: st.DataObject, contract: Contract, event: dict) -> str:
    names = [*TOP_LEVEL, *(f"payload.{spec.name}" for spec in contract.fields if spec.required)]
    path = data.draw(st.sampled_from(names))
    parent, name = (event["payload"], path[8:]) if path.startswith("payload.") else (event, path)
    if data.draw(st.booleans()):
        del parent[name]
    else:
        parent[name] = None  # null is absent
    return "missing_field"


def change_a_type(data: st.DataObject, contract: Contract, event: dict) -> str:
    kinds = {"event_id": "string", "event_type": "string", "event_time": "string", "source": "string", "schema_version": "integer", "payload": "map"}
    choices = [*kinds, *(f"payload.{spec.name}" for spec in contract.fields)]
    path = data.draw(st.sampled_from(choices))
    if path.startswith("payload."):
        spec = contract.field(path[8:])
        event["payload"][spec.name] = data.draw(wrong_for[spec.type])
    elif path == "payload":
        event["payload"] = data.draw(st.integers() | st.text() | st.lists(st.integers(), max_size=2) | st.booleans())
    else:
        event[path] = data.draw(wrong_for[kinds[path]])
    return "wrong_type"


def add_a_field(data: st.DataObject, contract: Contract, event: dict) -> str:
    known_payload = {spec.name for spec in contract.fields}
    if data.draw(st.booleans()):
        event[data.draw(st.text(max_size=10).filter(lambda name: name not in TOP_LEVEL))] = data.draw(json_values)
    else:
        event["payload"][data.draw(st.text(max_size=10).filter(lambda name: name not in known_payload))] = data.draw(json_values)
    return "unexpected_field"


def break_an_enum(data: st.DataObject, contract: Contract, event: dict) -> str:
    spec = data.draw(st.sampled_from([spec for spec in contract.fields if spec.enum is not None]))
    event["payload"][spec.name] = data.draw(st.text(max_size=12).filter(lambda value: value not in spec.enum))
    return "invalid_value"


def leave_a_bound(data: st.DataObject, contract: Contract, event: dict) -> str:
    bounded = [spec for spec in contract.fields if spec.max_length is not None or spec.minimum is not None or spec.maximum is not None]
    spec = data.draw(st.sampled_from(bounded))
    if spec.max_length is not None:
        value = data.draw(st.text(min_size=spec.max_length + 1, max_size=spec.max_length + 5))
    elif spec.minimum is not None and (spec.maximum is None or data.draw(st.booleans())):
        value = data.draw(st.integers(max_value=math.ceil(spec.minimum) - 1))
    else:
        value = data.draw(st.integers(min_value=math.floor(spec.maximum) + 1))
    event["payload"][spec.name] = value
    return "invalid_value"


def unknown_type(data: st.DataObject, contract: Contract, event: dict) -> str:
    event["event_type"] = data.draw(st.text(max_size=20).filter(lambda name: name not in REGISTRY))
    return "unknown_event_type"


def unknown_version(data: st.DataObject, contract: Contract, event: dict) -> str:
    event["schema_version"] = data.draw(st.integers().filter(lambda version: version not in REGISTRY[contract.event_type]))
    return "unknown_schema_version"


def absurd_time(data: st.DataObject, contract: Contract, event: dict) -> str:
    too_early = st.datetimes(datetime(1, 1, 2), EARLIEST.replace(tzinfo=None) - timedelta(seconds=1))
    too_late = st.datetimes(LATEST.replace(tzinfo=None) + timedelta(seconds=1), datetime(9999, 12, 30))
    event["event_time"] = data.draw(too_early | too_late).isoformat(timespec="microseconds") + "Z"
    return "absurd_time"


MUTATIONS: list[Mutation] = [drop_required, change_a_type, add_a_field, break_an_enum, leave_a_bound, unknown_type, unknown_version, absurd_time]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[mutation.__name__ for mutation in MUTATIONS])
@given(data=st.data())
def test_one_mutation_of_a_valid_event_is_rejected_with_its_reason(mutation: Mutation, data: st.DataObject) -> None:
    contract, event = data.draw(valid_events)
    expected = mutation(data, contract, event)
    rejection = VALIDATOR.check(event, NOW)
    assert rejection is not None and rejection.reason == expected, rejection
    raw = _dumps(event)
    if len(raw) <= rules().max_event_bytes:
        assert VALIDATOR.check_bytes(raw, NOW)[1] == rejection
