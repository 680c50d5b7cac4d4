"""The Spark session factory: Delta Lake (write, append, time travel) and Spark's Kafka source, for real."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest
from kafka import KafkaProducer

from braid.kafka import create_topic

pytestmark = pytest.mark.spark


def test_session_has_delta_and_the_settings(spark, settings) -> None:
    conf = spark.sparkContext.getConf()
    assert spark.sparkContext.master == settings.spark_master
    assert conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf.get("spark.sql.catalog.spark_catalog") == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert all(Path(jar).is_file() for jar in conf.get("spark.jars").split(","))
    assert "ivy" not in conf.get("spark.jars").lower()  # jars come from the cache, never a runtime download


def test_delta_write_append_read_and_time_travel(spark, tmp_path: Path) -> None:
    table = str(tmp_path / "payments")
    first = [("p1", "merchant-a", 12.5, date(2026, 11, 1)), ("p2", "merchant-b", 7.25, date(2026, 11, 1))]
    second = [("p3", "merchant-a", 100.0, date(2026, 11, 2))]
    columns = "payment_id string, merchant string, amount double, day date"
    spark.createDataFrame(first, columns).write.format("delta").partitionBy("day").save(table)
    spark.createDataFrame(second, columns).write.format("delta").mode("append").save(table)

    def rows(frame) -> list[tuple]:
        return sorted(tuple(row) for row in frame.collect())

    assert rows(spark.read.format("delta").load(table)) == sorted(first + second)
    assert rows(spark.read.format("delta").option("versionAsOf", 0).load(table)) == sorted(first)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").select("version", "operation").collect()
    assert sorted((row.version, row.operation) for row in history) == [(0, "WRITE"), (1, "WRITE")]


@pytest.mark.services
def test_streaming_reads_kafka_into_delta_exactly(spark, services, tmp_path: Path) -> None:
    from braid.smoke import parse_smoke_records

    topic = f"stream-{uuid.uuid4().hex[:8]}"
    create_topic(services.kafka_bootstrap_servers, topic, partitions=3, replication=1)
    events = [{"run_id": "r", "sequence": i, "user": f"u{i % 5}", "amount": i * 1.5} for i in range(250)]
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap_servers, acks="all")
    for event in events:
        producer.send(topic, key=event["user"].encode(), value=json.dumps(event).encode())
    producer.flush()
    producer.close()

    def stream_once() -> None:
        source = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", ",".join(services.kafka_bootstrap_servers))
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .load()
        )
        query = (
            parse_smoke_records(source)
            .writeStream.format("delta")
            .option("checkpointLocation", str(tmp_path / "checkpoint"))
            .trigger(availableNow=True)
            .start(str(tmp_path / "events"))
        )
        query.awaitTermination()

    stream_once()
    stream_once()  # a second run over the same checkpoint adds nothing: the offsets were committed with the data
    landed = spark.read.format("delta").load(str(tmp_path / "events"))
    got = sorted((r.sequence, r.user, r.amount) for r in landed.collect())
    assert got == sorted((e["sequence"], e["user"], e["amount"]) for e in events)
    coordinates = {(r.kafka_partition, r.kafka_offset) for r in landed.collect()}
    assert len(coordinates) == len(events)  # every Kafka record exactly once
