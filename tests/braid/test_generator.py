"""The generator: deterministic, every category where it says, and its ground truth checked independently."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from braid.generator import MALFORMED_KINDS, EventGenerator, GeneratorConfig
from braid.generator_run import RunOptions, read_manifest, run
from schemas.contracts import default_contracts, rules
from schemas.validation import Validator

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _records(**overrides):
    return list(EventGenerator(GeneratorConfig(start=START, **overrides)).records())


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    first = [(r.key, r.value) for r in _records(seed=11, count=3000)]
    assert first == [(r.key, r.value) for r in _records(seed=11, count=3000)]
    assert first != [(r.key, r.value) for r in _records(seed=12, count=3000)]


def test_every_record_is_what_its_category_says() -> None:
    records = _records(seed=3, count=20_000, malformed_fraction=0.05, duplicate_fraction=0.05)
    validator = Validator(default_contracts(), rules())
    now = START + timedelta(seconds=30)  # ingestion moment: the stream's event times are around START
    seen_ids: set[str] = set()
    for record in records:
        event, rejection = validator.check_bytes(record.value, now)
        if record.category.startswith("malformed:"):
            assert rejection is not None and rejection.reason == record.expected_reason, (record.category, rejection)
        else:
            assert rejection is None, (record.category, rejection)
            assert event == record.event
            assert record.key == event["payload"]["user_id"].encode()
            if record.category == "duplicate":
                assert event["event_id"] in seen_ids  # a resend of an event already produced
            else:
                assert event["event_id"] not in seen_ids
                seen_ids.add(event["event_id"])
    kinds = {record.category.split(":", 1)[1] for record in records if record.category.startswith("malformed:")}
    assert kinds == set(MALFORMED_KINDS)


def test_fractions_and_time_shapes() -> None:
    config = GeneratorConfig(start=START, seed=5, count=40_000, late_fraction=0.1, duplicate_fraction=0.03, malformed_fraction=0.02)
    records = list(EventGenerator(config).records())
    categories = Counter(record.category.split(":")[0] for record in records)
    assert categories["duplicate"] == pytest.approx(0.03 * 40_000, rel=0.15)
    assert categories["malformed"] == pytest.approx(0.02 * 40_000, rel=0.15)
    valid = [r for r in records if r.event is not None and r.category != "duplicate"]
    assert categories["late"] == pytest.approx(0.1 * len(valid), rel=0.1)
    for record in valid:
        index = int(record.event["event_id"].rsplit("-", 1)[1])
        nominal = START + timedelta(seconds=index / config.nominal_rate)
        behind = (nominal - datetime.fromisoformat(record.event["event_time"])).total_seconds()
        limit = {"on_time": (0, 0.5), "out_of_order": (1, 30), "late": (30, config.max_lateness_seconds)}[record.category]
        assert limit[0] - 0.001 <= behind <= limit[1] + 0.001, (record.category, behind)
    # Zipf-like keys: the hottest user is far above a uniform share, and many users appear.
    users = Counter(r.event["payload"]["user_id"] for r in valid)
    assert users.most_common(1)[0][1] > 20 * len(valid) / config.users
    assert len(users) > config.users / 4
    # both event types, in about the configured mix
    types = Counter(r.event["event_type"] for r in valid)
    assert types["payment"] / len(valid) == pytest.approx(config.payment_fraction, abs=0.02)


def test_padding_reaches_the_asked_size() -> None:
    records = [r for r in _records(seed=1, count=2000, event_bytes=1000, malformed_fraction=0) if r.event and r.event["event_type"] == "page_view"]
    sizes = [len(r.value) for r in records]
    assert 900 <= sum(sizes) / len(sizes) <= 1100


@pytest.mark.parametrize("processes", [1, 2])
def test_manifest_is_the_distinct_valid_events(tmp_path: Path, processes: int) -> None:
    config = GeneratorConfig(start=START, seed=9, count=5000, duplicate_fraction=0.1, malformed_fraction=0.05)
    summary = run(config, RunOptions(rate=None, bootstrap_servers=None, topic="unused", manifest_dir=tmp_path), processes=processes, log=lambda m: None)
    manifest = read_manifest(tmp_path)
    # Independent oracle: regenerate each partition's records and keep the first of each valid event_id.
    import dataclasses

    expected: dict[str, dict] = {}
    raw_valid = 0
    malformed = 0
    for part in range(processes):
        share = config.count // processes + (1 if part < config.count % processes else 0)
        part_config = dataclasses.replace(config, partition=part, partitions=processes, count=share, nominal_rate=config.nominal_rate / processes)
        for record in EventGenerator(part_config).records():
            if record.event is None:
                malformed += 1
                continue
            raw_valid += 1
            expected.setdefault(record.event["event_id"], record.event)
    assert sorted(manifest, key=lambda e: e["event_id"]) == sorted(expected.values(), key=lambda e: e["event_id"])
    assert (summary.produced, summary.valid_raw, summary.valid_unique) == (5000, raw_valid, len(expected))
    assert sum(summary.expected_quarantine.values()) == malformed
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["valid_unique"] == len(expected) and stored["processes"] == processes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"late_fraction": 1.5}, "late_fraction must be between 0 and 1"),
        ({"duplicate_fraction": 0.6, "malformed_fraction": 0.6}, "must not exceed 1"),
        ({"start": datetime(2026, 1, 1)}, "start must carry a time zone"),
    ],
)
def test_bad_configuration_is_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**{"start": START, **overrides})
