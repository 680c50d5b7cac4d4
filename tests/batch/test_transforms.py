"""The batch layer's transforms against a plain-Python account of the same master dataset: covered events up to a
cutoff, the first copy of each duplicate, and incremental recompute equal to full recompute."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta

import pytest

from batch.transforms import between_cutoffs, covered, expected_counts, first_copies, incremental_view_rows, view_rows
from braid.generator import EventGenerator, GeneratorConfig
from schemas.contracts import default_contracts
from schemas.spark_types import master_schema
from schemas.views import default_views
from tests.speed.oracle import expected_views

pytestmark = pytest.mark.spark

BASE = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
BUCKETS = 6


def master_rows(seed: int = 5, count: int = 2400) -> list[dict]:
    """Generated valid events as the speed layer would have landed them: spread over BUCKETS handoff buckets in
    arrival order, duplicates included, and some re-sent copies that differ from the first (a later bucket, another
    amount, another event time) so that the choice of the first copy matters."""
    rng = random.Random(seed)
    config = GeneratorConfig(seed=seed, count=count, start=BASE, late_fraction=0.15, duplicate_fraction=0.08, malformed_fraction=0.0)
    events = [record.event for record in EventGenerator(config).records() if record.event is not None]
    rows = []
    for index, event in enumerate(events):
        bucket = index * BUCKETS // len(events)
        rows.append(_row(event, bucket, index))
    for index, event in enumerate(rng.sample(events, 60)):  # late copies with another payload, up to 3 buckets later
        changed = copy.deepcopy(event)
        if "amount" in changed["payload"]:
            changed["payload"]["amount"] += 7
        changed["event_time"] = (datetime.fromisoformat(changed["event_time"]) + timedelta(minutes=9)).isoformat()
        rows.append(_row(changed, min(BUCKETS - 1, rows[[r["event_id"] for r in rows].index(event["event_id"])]["handoff_bucket"] + rng.randint(0, 3)), len(events) + index))
    return rows


def _row(event: dict, bucket: int, index: int) -> dict:
    ingested = BASE + timedelta(minutes=bucket, milliseconds=index % 1000)
    return {
        **{key: event[key] for key in ("event_id", "event_type", "schema_version", "source")},
        "event_time": datetime.fromisoformat(event["event_time"]),
        "payload": event["payload"],
        "handoff_bucket": bucket,
        "ingested_at": ingested,
        "kafka_partition": index % 3,
        "kafka_offset": index,
        "speed_batch": bucket,
        "ingest_date": ingested.date(),
    }


def frames(spark, rows: list[dict]) -> dict:
    registry = default_contracts()
    result = {}
    for event_type, versions in registry.items():
        schema = master_schema(versions)
        names = [field.name for field in schema.fields]
        typed = [[row[name] for name in names] for row in rows if row["event_type"] == event_type]
        result[event_type] = spark.createDataFrame(typed, schema)
    return result


def oracle(rows: list[dict], cutoff: int) -> dict:
    """First copy by (ingested_at, partition, offset) of every event in buckets <= cutoff, aggregated in Python."""
    first: dict[str, dict] = {}
    for row in sorted((r for r in rows if r["handoff_bucket"] <= cutoff), key=lambda r: (r["ingested_at"], r["kafka_partition"], r["kafka_offset"])):
        first.setdefault(row["event_id"], row)
    events = [{**row, "event_time": row["event_time"].isoformat()} for row in first.values()]
    return expected_views(events, default_views())


def collected(frame_by_view) -> dict:
    result = {}
    for view in default_views().values():
        for row in frame_by_view[view.name].collect():
            metrics = {m.name: row[m.name] for m in view.metrics if row[m.name] is not None}
            result[(row["view"], row["key"], int(row["window_start"].replace(tzinfo=UTC).timestamp()))] = metrics
    return result


@pytest.fixture(scope="module")
def dataset(spark):
    rows = master_rows()
    return rows, frames(spark, rows)


def test_first_copies_keep_the_copy_that_arrived_first(spark, dataset) -> None:
    rows, master = dataset
    payments = first_copies(master["payment"]).collect()
    expected: dict[str, dict] = {}
    for row in sorted((r for r in rows if r["event_type"] == "payment"), key=lambda r: (r["ingested_at"], r["kafka_partition"], r["kafka_offset"])):
        expected.setdefault(row["event_id"], row)
    assert {row.event_id: (row.kafka_offset, row.payload.amount) for row in payments} == {
        event_id: (row["kafka_offset"], row["payload"]["amount"]) for event_id, row in expected.items()
    }


def test_the_broadcast_plan_gives_the_same_first_copies(spark, dataset) -> None:
    from batch.transforms import first_copies_given, repeated_ids

    rows, master = dataset
    for frame in master.values():
        repeated = repeated_ids(frame)
        assert 0 < repeated.count() < frame.count()  # the dataset has re-sent events, and mostly single ones
        assert sorted(first_copies_given(frame, repeated).collect()) == sorted(first_copies(frame).collect())


@pytest.mark.parametrize("cutoff", [0, 2, BUCKETS - 1])
def test_full_recompute_equals_the_oracle_up_to_the_cutoff(spark, dataset, cutoff: int) -> None:
    rows, master = dataset
    registry = default_contracts()
    firsts = {t: first_copies(covered(frame, cutoff)) for t, frame in master.items()}
    result = {name: view_rows(firsts, view, registry) for name, view in default_views().items()}
    assert collected(result) == oracle(rows, cutoff)


@pytest.mark.parametrize(("previous", "cutoff"), [(1, 3), (3, BUCKETS - 1), (0, BUCKETS - 1)])
def test_incremental_equals_full(spark, dataset, previous: int, cutoff: int) -> None:
    rows, master = dataset
    registry = default_contracts()
    views = default_views()
    before = {name: view_rows({t: first_copies(covered(f, previous)) for t, f in master.items()}, view, registry) for name, view in views.items()}
    covered_now = {t: covered(frame, cutoff) for t, frame in master.items()}
    new = {t: between_cutoffs(frame, previous, cutoff) for t, frame in master.items()}
    incremental = {name: incremental_view_rows(covered_now, new, before[name], view, registry) for name, view in views.items()}
    full = {name: view_rows({t: first_copies(f) for t, f in covered_now.items()}, view, registry) for name, view in views.items()}
    assert collected(incremental) == collected(full) == oracle(rows, cutoff)
    assert oracle(rows, cutoff) != oracle(rows, previous)  # the new buckets changed something worth recomputing


def test_expected_counts_count_distinct_events_the_filter_keeps(spark, dataset) -> None:
    rows, master = dataset
    expectations = oracle(rows, BUCKETS - 1)
    views = list(default_views().values())
    totals = expected_counts(master, views).first().asDict()
    assert set(totals) == {view.name for view in views}
    for view in views:
        count_metric = next(m.name for m in view.metrics if m.aggregate == "count")
        total = sum(metrics[count_metric] for (name, _, _), metrics in expectations.items() if name == view.name)
        assert totals[view.name] == total
