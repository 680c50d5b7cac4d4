"""The quality gate on literal frames: a clean master snapshot and a consistent view pass; each kind of defect fails
the one expectation that names it; Data Docs are written and a project is reused across calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch.quality import Finding, snapshot_expectations, snapshot_frame, validate, view_frame_expectations
from braid.view_compiler import metric_kind
from schemas.contracts import default_contracts, parse_contract, rules
from schemas.spark_types import master_schema
from schemas.views import default_views

pytestmark = pytest.mark.spark

PAYMENT = default_contracts()["payment"]
INGESTED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
VIEW = default_views()["payments_by_merchant"]
KINDS = {metric.name: metric_kind(metric, default_contracts(), VIEW) for metric in VIEW.metrics}
WINDOW = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)


def payment(number: int, *, event_id: str | None = None, event_time: datetime | None = None, **payload) -> dict:
    """A master dataset row of a valid payment ingested 90 s after it happened; keywords change the payload."""
    fields = {
        "payment_id": f"pay-{number}", "user_id": f"user-{number % 2}", "merchant_id": "merchant-a",
        "amount": 1250 + number, "currency": "EUR", "status": "captured", "method": "card", "country": "DE",
    }  # fmt: skip
    return {
        "event_id": event_id or f"evt-{number}",
        "event_type": "payment",
        "schema_version": 1,
        "event_time": event_time or INGESTED - timedelta(seconds=90),
        "source": "checkout",
        "payload": {**fields, **payload},
        "handoff_bucket": int(INGESTED.timestamp()) // 60,
        "ingested_at": INGESTED,
        "kafka_partition": 0,
        "kafka_offset": number,
        "speed_batch": 1,
        "ingest_date": INGESTED.date(),
    }


CLEAN = [
    payment(1),
    payment(2, method=None),  # optional field left out
    payment(3, event_time=INGESTED + timedelta(seconds=60)),  # a minute ahead: within the future skew
    payment(4, event_time=INGESTED - timedelta(hours=168)),  # exactly the max lateness, which producers accept
    payment(5, currency="JPY", amount=1),  # the smallest amount allowed
]


def snapshot(spark, rows: list[dict]):
    return snapshot_frame(spark.createDataFrame(rows, master_schema(PAYMENT)))


def view_frame(spark, rows: list[tuple[str, int, int]]):
    """(key, minute, payments) -> a frame of payments_by_merchant; the other metrics are filler the suite ignores."""
    metric_types = {"int": "bigint", "float": "double"}
    metrics = [f"{metric.name} {metric_types[KINDS[metric.name]]}" for metric in VIEW.metrics]
    schema = ", ".join(["view string", "key string", "window_start timestamp", *metrics])
    records = [
        {"view": VIEW.name, "key": key, "window_start": WINDOW + timedelta(minutes=minute), "payments": payments,
         "revenue": payments * 1250, "min_amount": 1250, "max_amount": 1250}
        for key, minute, payments in rows
    ]  # fmt: skip
    return spark.createDataFrame(records, schema)


def test_snapshot_frame_flattens_the_payload_and_measures_lateness(spark) -> None:
    frame = snapshot(spark, CLEAN)
    assert frame.columns == [
        "event_id", "event_type", "schema_version", "event_time", "source",
        "handoff_bucket", "ingested_at", "kafka_partition", "kafka_offset", "speed_batch", "ingest_date",
        "payload_payment_id", "payload_user_id", "payload_merchant_id", "payload_amount", "payload_currency",
        "payload_status", "payload_method", "payload_country", "lateness_seconds",
    ]  # fmt: skip
    rows = {row.event_id: (row.lateness_seconds, row.payload_method, row.payload_amount) for row in frame.collect()}
    assert rows == {
        "evt-1": (90.0, "card", 1251),
        "evt-2": (90.0, None, 1252),
        "evt-3": (-60.0, "card", 1253),
        "evt-4": (604800.0, "card", 1254),
        "evt-5": (90.0, "card", 1),
    }


def test_snapshot_expectations_come_from_the_contract() -> None:
    checks = {(e.expectation_type, e.column): e for e in snapshot_expectations("payment", PAYMENT, rules())}
    not_null = {column for kind, column in checks if kind == "expect_column_values_to_not_be_null"}
    assert not_null == {
        "event_id", "event_type", "schema_version", "event_time", "source",
        "handoff_bucket", "ingested_at", "kafka_partition", "kafka_offset", "speed_batch", "ingest_date",
        "payload_payment_id", "payload_user_id", "payload_merchant_id", "payload_amount", "payload_currency",
        "payload_status", "payload_country",
    }  # fmt: skip
    assert ("expect_column_values_to_not_be_null", "payload_method") not in checks  # optional in the contract
    method = checks["expect_column_values_to_be_in_set", "payload_method"]
    assert method.value_set == ["card", "wallet", "bank_transfer"]
    assert checks["expect_column_values_to_be_in_set", "schema_version"].value_set == [1]
    amount = checks["expect_column_values_to_be_between", "payload_amount"]
    assert (amount.min_value, amount.max_value) == (1, 100_000_000)
    lateness = checks["expect_column_values_to_be_between", "lateness_seconds"]
    assert (lateness.min_value, lateness.max_value) == (-300, 168 * 3600)


def test_snapshot_expectations_hold_only_what_every_version_promises() -> None:
    def version(number: int, required: list[str], low: int, high: int, currencies: list[str]):
        properties = {
            "user_id": {"type": "string"},
            "amount": {"type": "integer", "minimum": low, "maximum": high},
            "currency": {"type": "string", "enum": currencies},
        }
        payload = {"type": "object", "additionalProperties": False, "required": required, "properties": properties}
        return parse_contract({"event_type": "order", "version": number, "key": "user_id", "payload": payload}, "test")

    # v2 makes amount optional, widens its range and adds a currency: the column must accept rows of both.
    versions = {
        1: version(1, ["user_id", "amount"], 1, 100, ["EUR"]),
        2: version(2, ["user_id"], 0, 1000, ["EUR", "USD"]),
    }
    checks = {(e.expectation_type, e.column): e for e in snapshot_expectations("order", versions, rules())}
    assert ("expect_column_values_to_not_be_null", "payload_amount") not in checks  # optional since v2
    assert ("expect_column_values_to_not_be_null", "payload_user_id") in checks
    amount = checks["expect_column_values_to_be_between", "payload_amount"]
    assert (amount.min_value, amount.max_value) == (0, 1000)
    assert checks["expect_column_values_to_be_in_set", "payload_currency"].value_set == ["EUR", "USD"]
    assert checks["expect_column_values_to_be_in_set", "schema_version"].value_set == [1, 2]


@pytest.fixture(scope="module")
def clean_report(spark, tmp_path_factory):
    project = tmp_path_factory.mktemp("quality")
    checks = snapshot_expectations("payment", PAYMENT, rules())
    return project, len(checks), validate(snapshot(spark, CLEAN), "snapshot_payment", checks, str(project))


def test_a_clean_snapshot_passes(clean_report) -> None:
    _, count, report = clean_report
    assert (report.success, report.evaluated, report.failures) == (True, count, ())
    assert report.summary() == f"snapshot_payment: passed {count} expectations"


def test_data_docs_are_built_in_the_project(clean_report) -> None:
    project, _, report = clean_report
    index = Path(report.docs_index)
    assert index.is_file() and project in index.parents
    assert "snapshot_payment" in index.read_text()


@pytest.mark.parametrize(
    ("defect", "expectation", "column", "detail"),
    [
        (payment(9, currency="XYZ"), "expect_column_values_to_be_in_set", "payload_currency", "1 of 6 rows unexpected, e.g. 'XYZ'"),
        (payment(9, amount=-5), "expect_column_values_to_be_between", "payload_amount", "1 of 6 rows unexpected, e.g. -5"),
        (payment(9, event_id="evt-1"), "expect_column_values_to_be_unique", "event_id", "2 of 6 rows unexpected, e.g. 'evt-1'"),
        (payment(9, status=None), "expect_column_values_to_not_be_null", "payload_status", "1 of 6 rows unexpected, e.g. None"),
        (
            payment(9, event_time=INGESTED - timedelta(days=10)),  # 864000 s late; 604800 s is the most allowed
            "expect_column_values_to_be_between", "lateness_seconds", "1 of 6 rows unexpected, e.g. 864000.0",
        ),
    ],  # fmt: skip
    ids=["unknown_currency", "negative_amount", "duplicate_event_id", "null_required_field", "ten_days_late"],
)
def test_each_defect_fails_the_expectation_that_names_it(spark, tmp_path, defect, expectation, column, detail) -> None:
    checks = snapshot_expectations("payment", PAYMENT, rules())
    report = validate(snapshot(spark, CLEAN + [defect]), "snapshot_payment", checks, str(tmp_path))
    assert not report.success
    assert report.failures == (Finding(expectation, column, detail),)
    assert report.summary() == f"snapshot_payment: 1 of {len(checks)} failed: {expectation}({column}): {detail}"


KEY_A, KEY_B = '["merchant-a","EUR"]', '["merchant-b","USD"]'
CONSISTENT = [(KEY_A, 0, 2), (KEY_A, 1, 1), (KEY_B, 0, 4)]


SUM, BETWEEN = "expect_column_sum_to_be_between", "expect_column_values_to_be_between"


@pytest.mark.parametrize(
    ("rows", "total", "failures"),
    [
        (CONSISTENT, 7, []),
        (CONSISTENT, 8, [Finding(SUM, "payments", "observed 7.0")]),  # GE reports a sum as a float
        ([(KEY_A, 0, 2), (KEY_A, 1, -1), (KEY_B, 0, 4)], 5, [Finding(BETWEEN, "payments", "1 of 3 rows unexpected, e.g. -1")]),
        (
            CONSISTENT + [(KEY_A, 0, 3)], 10,
            [Finding("expect_compound_columns_to_be_unique", "key,window_start",
                     f"2 of 4 rows unexpected, e.g. ('{KEY_A}', 2026-11-20T11:00:00)")],
        ),
        ([], 0, []),  # a view whose filter kept nothing
        ([], 3, [Finding(SUM, "payments", "observed None")]),
    ],  # fmt: skip
    ids=["consistent", "off_by_one", "negative_count", "duplicate_window", "empty", "empty_but_counted"],
)
def test_view_frame_suite(spark, tmp_path, rows, total, failures) -> None:
    checks = view_frame_expectations(VIEW, KINDS, {"payments": total})
    report = validate(view_frame(spark, rows), "view_payments_by_merchant", checks, str(tmp_path))
    assert (report.success, report.evaluated, report.failures) == (not failures, 5, tuple(failures))


def test_validate_twice_reuses_the_project_and_follows_the_suite(spark, tmp_path) -> None:
    checks = snapshot_expectations("payment", PAYMENT, rules())
    frame = snapshot(spark, CLEAN + [payment(9, currency="XYZ")])
    first = validate(frame, "snapshot_payment", checks, str(tmp_path))
    second = validate(frame, "snapshot_payment", checks, str(tmp_path))  # the same expectation objects again
    found = [(f.expectation, f.column, f.detail) for f in second.failures]
    assert found == [("expect_column_values_to_be_in_set", "payload_currency", "1 of 6 rows unexpected, e.g. 'XYZ'")]
    assert second.failures == first.failures
    assert not frame.is_cached  # GE persists what it validates; validate lets it go again
    fewer = [check for check in checks if getattr(check, "column", None) != "payload_currency"]
    third = validate(frame, "snapshot_payment", fewer, str(tmp_path))  # a changed suite replaces the stored one
    assert (third.success, third.evaluated) == (True, len(checks) - 2)
    # One result per passing validation; a failing one keeps its verdict and the rerun that found the example rows.
    assert len(list((tmp_path / "gx" / "uncommitted" / "validations" / "snapshot_payment").rglob("*.json"))) == 2 + 2 + 1


def test_misuse_raises(spark) -> None:
    frame = snapshot(spark, CLEAN)
    with pytest.raises(ValueError, match="suite 'snapshot.payment' must be"):
        validate(frame, "snapshot.payment", snapshot_expectations("payment", PAYMENT, rules()), "unused")
    with pytest.raises(ValueError, match=r"expected_counts names \['revenue'\], not count metrics"):
        view_frame_expectations(VIEW, KINDS, {"revenue": 3})
    with pytest.raises(ValueError, match="master dataset columns \\['payload'"):
        snapshot_frame(spark.createDataFrame(CLEAN, master_schema(PAYMENT)).drop("payload"))
