"""The bad-input corpus through the validator: every case gets exactly its outcome, valid events come back unchanged."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from schemas.contracts import default_contracts, rules
from schemas.validation import REASONS, Validator
from tests.corpus.bad_events import VALID, Case, corpus

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CASES = corpus(NOW)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(default_contracts(), rules())


def test_the_corpus_names_each_case_once_and_covers_every_reason() -> None:
    assert [name for name, count in Counter(case.name for case in CASES).items() if count > 1] == []
    assert {case.expected for case in CASES} == {*REASONS, VALID}
    assert {case.as_event_expected for case in CASES} <= {*REASONS, VALID}


def test_the_corpus_sits_on_the_size_limit_and_carries_a_duplicate_pair() -> None:
    by_name = {case.name: case for case in CASES}
    assert len(by_name["exactly max_event_bytes"].raw) == rules().max_event_bytes
    assert len(by_name["one byte over max_event_bytes"].raw) == rules().max_event_bytes + 1
    first, second = [case.event for case in CASES if "duplicate" in case.tags]
    assert first["event_id"] == second["event_id"] and first["payload"] != second["payload"]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_gets_exactly_its_outcome(validator: Validator, case: Case) -> None:
    event, rejection = validator.check_bytes(case.raw, NOW)
    if case.expected == VALID:
        assert rejection is None
        assert event == json.loads(case.raw.decode("utf-8"))  # every string as it was sent (the standard library's reading)
    else:
        assert event is None and rejection is not None
        assert rejection.reason == case.expected, rejection.detail
        assert len(rejection.detail) <= 600  # a detail never echoes a huge record back


def test_valid_strings_survive_byte_for_byte(validator: Validator) -> None:
    by_name = {case.name: case for case in CASES}
    cql = validator.check_bytes(by_name["CQL and SQL in the strings"].raw, NOW)[0]["payload"]
    assert cql["user_id"] == "x'; DROP TABLE speed_views; --"
    assert cql["merchant_id"] == 'm"); DELETE FROM batch_views WHERE ("1"="1'
    escapes = validator.check_bytes(by_name["unicode escapes and a surrogate pair"].raw, NOW)[0]["payload"]
    assert escapes["user_id"] == "é😀\x00/"
    twice = validator.check_bytes(by_name["a field given twice: the last one counts"].raw, NOW)[0]["payload"]
    assert twice["amount"] == 500
