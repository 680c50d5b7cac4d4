"""Spark and Delta schemas derived from the contracts: nothing here restates a field by hand."""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DateType,
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas.contracts import Contract

_SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(),
    "integer": LongType(),
    "number": DoubleType(),
    "boolean": BooleanType(),
    "map": MapType(StringType(), StringType()),
}

# Columns the speed layer adds to every row of the master dataset (DESIGN.md: the merge contract, rule 1).
INGESTION_FIELDS = (
    StructField("handoff_bucket", LongType(), False),
    StructField("ingested_at", TimestampType(), False),
    StructField("kafka_partition", IntegerType(), False),
    StructField("kafka_offset", LongType(), False),
    StructField("speed_batch", LongType(), False),  # the micro-batch that wrote the row: replays are recognised by it
    StructField("ingest_date", DateType(), False),  # the table's partition column
)


def payload_type(versions: dict[int, Contract]) -> StructType:
    """The payload struct of an event type: every field of every version (compatible versions agree on types)."""
    fields: dict[str, StructField] = {}
    for version in sorted(versions):
        for spec in versions[version].fields:
            fields.setdefault(spec.name, StructField(spec.name, _SPARK_TYPES[spec.type], True))
    return StructType(list(fields.values()))


def parsing_schema(versions: dict[int, Contract]) -> StructType:
    """What `from_json` parses an event of this type with; event_time stays a string until it is validated."""
    return StructType(
        [
            StructField("event_id", StringType()),
            StructField("event_type", StringType()),
            StructField("schema_version", LongType()),
            StructField("event_time", StringType()),
            StructField("source", StringType()),
            StructField("payload", payload_type(versions)),
        ]
    )


def master_schema(versions: dict[int, Contract]) -> StructType:
    """The Delta master dataset table of one event type: the typed envelope, the payload, and ingestion columns."""
    return StructType(
        [
            StructField("event_id", StringType(), False),
            StructField("event_type", StringType(), False),
            StructField("schema_version", IntegerType(), False),
            StructField("event_time", TimestampType(), False),
            StructField("source", StringType(), False),
            StructField("payload", payload_type(versions), False),
            *INGESTION_FIELDS,
        ]
    )
