"""Spark's parsing schema, derived from the contracts, reads generated events back to the same values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from braid.generator import EventGenerator, GeneratorConfig
from schemas.contracts import default_contracts
from schemas.spark_types import master_schema, parsing_schema

pytestmark = pytest.mark.spark


def test_master_schema_has_every_contract_field_once() -> None:
    versions = default_contracts()["page_view"]
    payload = master_schema(versions)["payload"].dataType
    declared = list(dict.fromkeys(spec.name for v in sorted(versions) for spec in versions[v].fields))
    assert payload.fieldNames() == declared
    assert master_schema(versions).fieldNames()[-6:] == [
        "handoff_bucket", "ingested_at", "kafka_partition", "kafka_offset", "speed_batch", "ingest_date",
    ]  # fmt: skip


@pytest.mark.parametrize("event_type", ["payment", "page_view"])
def test_from_json_with_the_derived_schema_gives_back_the_events(spark, event_type: str) -> None:
    from pyspark.sql import functions as F

    config = GeneratorConfig(seed=4, count=400, start=datetime(2026, 11, 24, tzinfo=UTC), malformed_fraction=0, duplicate_fraction=0, event_bytes=900)
    records = [r for r in EventGenerator(config).records() if r.event["event_type"] == event_type]
    frame = spark.createDataFrame([(r.value.decode(),) for r in records], "value string")
    parsed = frame.select(F.from_json("value", parsing_schema(default_contracts()[event_type])).alias("e")).select("e.*")
    rows = {row.event_id: row.asDict(recursive=True) for row in parsed.collect()}
    assert len(rows) == len(records)
    for record in records:
        row = rows[record.event["event_id"]]
        expected_payload = {name: record.event["payload"].get(name) for name in row["payload"]}
        assert row["payload"] == expected_payload
        assert (row["event_type"], row["schema_version"], row["event_time"]) == (event_type, record.event["schema_version"], record.event["event_time"])
