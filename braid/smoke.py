"""The smoke pipeline: proves the whole local stack end to end on a small, known input.

produce N keyed JSON events to Kafka -> Spark Structured Streaming (available-now) -> Delta table -> row count written
to Cassandra and read back. Each run has its own id, so its counts are exact however many runs came before.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from braid.errors import BraidError

TOPIC = "braid.smoke"
PARTITIONS = 3


@dataclass(frozen=True)
class SmokeResult:
    run_id: str
    produced: int
    rows_in_delta: int
    count_in_cassandra: int
    delta_version: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.produced == self.rows_in_delta == self.count_in_cassandra


def smoke_events(run_id: str, count: int, keys: int = 10) -> list[tuple[bytes, bytes]]:
    """`count` (key, value) records of a payment-like shape, keyed by user so one user stays in one partition."""
    records = []
    for sequence in range(count):
        user = f"user-{sequence % keys}"
        value = {"run_id": run_id, "sequence": sequence, "user": user, "amount": round(1 + sequence * 0.25, 2)}
        records.append((user.encode(), json.dumps(value).encode()))
    return records


def parse_smoke_records(records):
    """Kafka source rows -> typed smoke events with their Kafka coordinates (a pure DataFrame transform)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("run_id", StringType()),
            StructField("sequence", LongType()),
            StructField("user", StringType()),
            StructField("amount", DoubleType()),
        ]
    )
    parsed = F.from_json(F.col("value").cast("string"), schema)
    return records.select(
        parsed.alias("event"), F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset")
    ).select("event.*", "kafka_partition", "kafka_offset")


def _end_offsets(bootstrap_servers: list[str], topic: str, security: dict[str, Any]) -> dict[str, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **security)
    try:
        partitions = [TopicPartition(topic, number) for number in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            raise BraidError(f"smoke: Kafka reports no partitions for topic {topic}")
        return {str(tp.partition): offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def run_smoke(settings, *, events: int = 1000, log: Callable[[str], None] = print) -> SmokeResult:
    from kafka import KafkaProducer

    from braid.cassandra import cluster_from_settings, ensure_keyspace, replication_map
    from braid.kafka import KafkaSecurity, create_topic
    from braid.services import local
    from braid.spark import session_from_settings

    started = time.monotonic()
    local.up(settings, log=log)
    run_id = uuid.uuid4().hex[:12]
    security = KafkaSecurity.from_settings(settings)
    created = create_topic(settings.kafka_bootstrap_servers, TOPIC, partitions=PARTITIONS, replication=1, security=security)
    log(f"kafka: topic {TOPIC} {'created' if created else 'exists'} ({PARTITIONS} partitions)")

    # This run streams from the topic's current end, with a checkpoint of its own: its result never depends on what
    # earlier runs left behind (a reset broker with an old checkpoint would otherwise read nothing).
    starting_offsets = "earliest" if created else json.dumps({TOPIC: _end_offsets(settings.kafka_bootstrap_servers, TOPIC, security.client_config())})
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5, **security.client_config())
    futures = [producer.send(TOPIC, key=key, value=value) for key, value in smoke_events(run_id, events)]
    producer.flush()
    produced = sum(1 for future in futures if future.get(timeout=30))
    producer.close()
    log(f"kafka: produced {produced} events for run {run_id}")

    spark = session_from_settings(settings, "braid-smoke")
    table = f"{settings.lake_root}/smoke/events"
    query = (
        parse_smoke_records(
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", ",".join(settings.kafka_bootstrap_servers))
            .option("subscribe", TOPIC)
            .option("startingOffsets", starting_offsets)
            .options(**security.spark_options())
            .load()
        )
        .writeStream.format("delta")
        .option("checkpointLocation", f"{settings.checkpoints}/smoke/{run_id}")
        .trigger(availableNow=True)
        .start(table)
    )
    query.awaitTermination()
    from pyspark.sql import functions as F

    rows = spark.read.format("delta").load(table).where(F.col("run_id") == run_id).count()
    version = spark.sql(f"DESCRIBE HISTORY delta.`{table}` LIMIT 1").first()["version"]
    log(f"spark: streamed Kafka -> Delta table {table}: {rows} rows for this run (table version {version})")

    cluster = cluster_from_settings(settings)
    try:
        session = cluster.connect()
        keyspace = settings.cassandra_keyspace
        replication = replication_map(
            settings.cassandra_replication_class, settings.cassandra_replication_factor, settings.cassandra_local_datacenter
        )
        ensure_keyspace(session, keyspace, replication)
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {keyspace}.smoke_runs "
            "(run_id text PRIMARY KEY, produced int, rows_in_delta bigint, finished_at timestamp)"
        )
        insert = session.prepare(f"INSERT INTO {keyspace}.smoke_runs (run_id, produced, rows_in_delta, finished_at) VALUES (?, ?, ?, ?)")
        session.execute(insert, (run_id, produced, rows, datetime.now(UTC)))
        select = session.prepare(f"SELECT rows_in_delta FROM {keyspace}.smoke_runs WHERE run_id = ?")
        stored = session.execute(select, (run_id,)).one().rows_in_delta
    finally:
        cluster.shutdown()
    log(f"cassandra: wrote the row count to {keyspace}.smoke_runs and read back {stored}")

    result = SmokeResult(run_id, produced, rows, stored, version, time.monotonic() - started)
    if not result.ok:
        raise BraidError(f"smoke: counts disagree: produced {produced}, Delta {rows}, Cassandra {stored} (run {run_id})")
    log(f"smoke: OK in {result.seconds:.1f}s: {produced} produced = {rows} in Delta = {stored} in Cassandra")
    return result
