"""The speed layer's streaming job: Kafka -> classify -> Delta master dataset + quarantine -> speed views in Cassandra.

Exactly once, by construction:
- Spark's offset log fixes each micro-batch's offsets and timestamp before it runs; a replay sees the same records
  and the same `batch_ts`, so the same handoff bucket.
- Delta appends carry (application id, batch id) (`txnAppId`/`txnVersion`): a replayed append is skipped.
- Speed views are computed from the rows the batch committed to Delta, de-duplicated against *earlier* batches only,
  and upserted into Cassandra keyed by batch id: a replay rewrites the same values.
"""

from __future__ import annotations

import ast
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from braid.errors import BraidError, storage_failure
from braid.kafka import KafkaSecurity
from braid.layout import shard_column
from braid.view_compiler import aggregate_view, metric_kind, metric_maps
from schemas.contracts import Contract
from schemas.views import View
from speed import delta_io
from speed.cassandra_io import SpeedStore
from speed.seen import SeenIds
from speed.transforms import (
    classify,
    earlier_copies,
    horizon_hashes,
    id_hashes,
    master_rows,
    quarantine_rows,
    unique_events,
    with_ingestion,
)


@dataclass(frozen=True)
class SpeedConfig:
    bootstrap_servers: list[str]
    topic: str
    lake_root: str
    checkpoint: str
    bucket_seconds: int
    view_shards: int
    dedup_horizon_buckets: int
    trigger_seconds: float
    max_offsets_per_trigger: int | None
    starting_offsets: str = "earliest"
    dead_letter_topic: str | None = None
    kafka_security: KafkaSecurity = KafkaSecurity()  # SASL credentials for the source, the dead letters and the offsets
    rules_file: Path | None = None  # the rules the Python workers validate against (settings.rules_file)


def kafka_stream(spark: SparkSession, config: SpeedConfig) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", ",".join(config.bootstrap_servers))
        .option("subscribe", config.topic)
        .option("startingOffsets", config.starting_offsets)
        .option("failOnDataLoss", "true")  # data deleted before it was read is an incident, not a detail
        .options(**config.kafka_security.spark_options())
    )
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(config.max_offsets_per_trigger))
    # current_timestamp() in a streaming plan is the micro-batch's timestamp, restored from the offset log on replay.
    return reader.load().withColumn("batch_ts", F.current_timestamp())


class MicroBatchWriter:
    """The foreachBatch function: everything one micro-batch does, in an order that makes replays harmless."""

    def __init__(
        self,
        config: SpeedConfig,
        registry: dict[str, dict[int, Contract]],
        views: dict[str, View],
        store: SpeedStore,
        log: Callable[[str], None],
    ) -> None:
        self.config = config
        self.registry = registry
        self.views = views
        self.store = store
        self.log = log
        self._app_id: str | None = None
        self._lock = threading.Lock()
        progress = store.progress()
        self.complete_through = progress.complete_through if progress and progress.complete_through is not None else -1
        self.seen = SeenIds(config.dedup_horizon_buckets)
        self._kinds = {
            (view.name, metric.name): metric_kind(metric, registry, view) for view in views.values() for metric in view.metrics
        }

    def app_id(self, spark: SparkSession) -> str:
        # The query id lives in the checkpoint: a new checkpoint is a new application to Delta, a restart is not.
        if self._app_id is None:
            metadata = spark.read.text(f"{self.config.checkpoint}/metadata").first()[0]
            self._app_id = f"braid-speed-{json.loads(metadata)['id']}"
        return self._app_id

    def advance_complete_through(self, bucket: int) -> bool:
        with self._lock:
            if bucket <= self.complete_through:
                return False
            self.complete_through = bucket
            return True

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        config = self.config
        # A task per core rather than per Kafka partition: each task pays for its own projections and Python worker
        # round trip, and six partitions on two cores made three rounds of them (a no-op with fewer partitions).
        batch = batch.coalesce(spark.sparkContext.defaultParallelism)
        classified = classify(with_ingestion(batch, config.bucket_seconds), config.rules_file).persist()
        phases: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            phases[name] = round(time.perf_counter() - clock, 2)
            clock = time.perf_counter()

        try:
            # One pass over the batch materialises the classification and gives every figure the batch reports: per
            # (reason, type, partition) and, as the rollup's grand total (grouping id 7), for the whole batch.
            figures = classified.rollup("reason", "event_type", "partition").agg(
                F.count(F.lit(1)).alias("rows"),
                F.min("handoff_bucket").alias("bucket"),
                F.max("offset").alias("max_offset"),
                F.min(F.unix_millis("timestamp")).alias("oldest_ms"),
                # produce times at the 50th, 5th and 1st percentile: their age at commit is freshness p50, p95, p99
                F.percentile_approx(F.unix_millis("timestamp"), [0.5, 0.05, 0.01]).alias("produced_ms"),
                F.grouping_id().alias("level"),
            ).collect()
            stats = [row for row in figures if row.level == 0]
            if not stats:
                self.seen.skipped(batch_id)
                return
            whole = next(row for row in figures if row.level == 7)
            lap("classify")
            bucket = min(row.bucket for row in stats)
            app_id = self.app_id(spark)
            by_reason: dict[str, int] = {}
            max_offsets: dict[str, int] = {}
            for row in stats:
                if row.reason is not None:
                    by_reason[row.reason] = by_reason.get(row.reason, 0) + row.rows
                max_offsets[str(row.partition)] = max(max_offsets.get(str(row.partition), -1), row.max_offset)
            present = {row.event_type for row in stats if row.reason is None}
            if by_reason:
                delta_io.append_once(
                    quarantine_rows(classified, batch_id), delta_io.quarantine_path(config.lake_root), app_id=app_id,
                    batch_id=batch_id, rows=sum(by_reason.values()),
                )  # fmt: skip
            if by_reason and config.dead_letter_topic:
                self._send_dead_letters(classified, batch_id)
            lap("quarantine")
            if self.seen.next_batch != batch_id:
                self._load_seen(spark, batch_id, bucket)
                lap("dedup_index_load")
            unique, cached, committed = {}, [], {}
            try:
                for event_type, versions in self.registry.items():
                    rows = master_rows(classified, event_type, versions, batch_id)
                    if event_type not in present:  # no commit for a type the batch has none of (a replay skips it too)
                        unique[event_type] = rows
                        continue
                    # Parsed once, then appended, hashed for the index and de-duplicated. On a replay the same offsets
                    # and batch timestamp give the same rows, so it sees what the first attempt wrote.
                    rows = rows.persist()
                    cached.append(rows)
                    path = delta_io.master_path(config.lake_root, event_type)
                    count = sum(row.rows for row in stats if row.reason is None and row.event_type == event_type)
                    delta_io.append_once(rows, path, app_id=app_id, batch_id=batch_id, rows=count)
                    hashes = id_hashes(rows).toArrow()
                    committed[event_type] = (hashes.column("handoff_bucket").to_numpy(), hashes.column("hash").to_numpy())
                    earlier = self._earlier(spark, event_type, path, committed[event_type][1], batch_id, bucket)
                    unique[event_type] = unique_events(rows, earlier).persist()
                    cached.append(unique[event_type])
                lap("master")
                rows = self._view_rows(unique, batch_id)
            finally:
                for frame in cached:
                    frame.unpersist()
            lap("views")
            self.store.index_buckets({(row[0], row[1]) for row in rows})  # before the rows: a reader finds every bucket
            written = self.store.write_view_rows(rows)
            lap("cassandra")
            finished_ms = time.time() * 1000
            valid = sum(row.rows for row in stats if row.reason is None)
            summary = {
                "input_rows": sum(row.rows for row in stats),
                "valid_rows": valid,
                "quarantined_rows": sum(by_reason.values()),
                "quarantine_by_reason": by_reason,
                "view_rows": written,
                # produced (Kafka timestamp) -> visible in Cassandra: the ages of the batch's produce-time percentiles
                **{f"freshness_{name}_ms": int(finished_ms - whole.produced_ms[index]) for index, name in enumerate(("p50", "p95", "p99"))},
                "freshness_max_ms": int(finished_ms - whole.oldest_ms),
                "max_offsets": max_offsets,
            }
            self.advance_complete_through(bucket - 1)
            self.store.record_batch(batch_id, bucket, self.complete_through, summary)
            for event_type, (buckets, hashes) in committed.items():
                self.seen.add(event_type, buckets, hashes)
            self.seen.committed(batch_id, bucket)
            self.log(
                f"speed: batch {batch_id} (bucket {bucket}): {summary['input_rows']} records, {valid} valid, "
                f"{summary['quarantined_rows']} quarantined, {written} view rows, freshness p50 {summary['freshness_p50_ms']} ms; "
                f"seconds: {phases}"
            )
        finally:
            classified.unpersist()

    def _load_seen(self, spark: SparkSession, batch_id: int, bucket: int) -> None:
        """The de-duplication index for the batches before `batch_id`, from the master dataset (one scan of the horizon)."""
        self.seen.reset(batch_id)
        for event_type in self.registry:
            master = delta_io.read_table(spark, delta_io.master_path(self.config.lake_root, event_type))
            if master is None:
                continue
            entries = horizon_hashes(master, batch_id, bucket, self.config.dedup_horizon_buckets).toArrow()
            self.seen.add(event_type, entries.column("handoff_bucket").to_numpy(), entries.column("hash").to_numpy())
        self.log(f"speed: de-duplication index loaded for batch {batch_id}: {self.seen.size()} event ids within the horizon")

    def _earlier(self, spark: SparkSession, event_type: str, path: str, hashes: np.ndarray, batch_id: int, bucket: int) -> DataFrame | None:
        """The ids of this batch's events that an earlier batch within the horizon brought, or None when the index
        holds none of their hashes (then Delta is not read at all)."""
        held, buckets = self.seen.held(event_type, bucket, hashes)
        if not len(held):
            return None
        candidates = spark.createDataFrame([(int(value),) for value in held.tolist()], "hash bigint")
        return earlier_copies(spark.read.format("delta").load(path), batch_id, buckets, candidates)

    def _send_dead_letters(self, classified: DataFrame, batch_id: int) -> None:
        """Quarantined records to the dead-letter topic too, with the reason and their origin in headers.

        At least once: a replayed batch sends them again; the quarantine table stays the exact record."""
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=self.config.bootstrap_servers, acks="all", linger_ms=5, **self.config.kafka_security.client_config()
        )
        try:
            rows = classified.where(F.col("reason").isNotNull()).select("key", "value", "partition", "offset", "reason", "detail")
            futures = [
                producer.send(
                    self.config.dead_letter_topic,
                    key=row.key,
                    value=row.value,
                    headers=[
                        ("braid.reason", row.reason.encode()),
                        ("braid.detail", (row.detail or "").encode()),
                        ("braid.origin", f"{self.config.topic}/{row.partition}/{row.offset}".encode()),
                        ("braid.speed_batch", str(batch_id).encode()),
                    ],
                )
                for row in rows.toLocalIterator()
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=30)  # an unacknowledged dead letter fails the batch, which is then replayed
        finally:
            producer.close()

    def _view_rows(self, unique: dict[str, DataFrame], batch_id: int) -> list[tuple]:
        """Every view's aggregates of this batch, in one Spark job: one frame of (view, key, window, bucket, metrics)."""
        frames = []
        for view in self.views.values():
            aggregated = aggregate_view(unique, view, self.registry, by_handoff_bucket=True)
            ints, floats = metric_maps(view, {m.name: self._kinds[(view.name, m.name)] for m in view.metrics})
            frames.append(
                aggregated.select(
                    "view", "key", F.unix_millis("window_start").alias("window_ms"), "handoff_bucket",
                    shard_column(F.col("key"), self.config.view_shards).alias("shard"), ints, floats,
                )  # fmt: skip
            )
        rows = []
        for row in reduce(lambda left, right: left.unionByName(right), frames).collect():
            start = datetime.fromtimestamp(row.window_ms / 1000, UTC)
            ints = {name: int(value) for name, value in (row.int_metrics or {}).items() if value is not None}
            floats = {name: float(value) for name, value in (row.float_metrics or {}).items() if value is not None}
            rows.append((row.view, row.handoff_bucket, row.shard, row.key, start, batch_id, ints, floats))
        return rows


def _offsets(value: Any) -> dict[str, dict[str, int]]:
    # PySpark 4 hands Kafka offsets over as str(dict) rather than JSON; accept both.
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = ast.literal_eval(value)
    return value or {}


def _lag(progress: dict[str, Any]) -> dict[str, int]:
    lag: dict[str, int] = {}
    for source in progress.get("sources", []):
        end, latest = _offsets(source.get("endOffset")), _offsets(source.get("latestOffset"))
        for topic, partitions in (latest or {}).items():
            for partition, offset in partitions.items():
                lag[f"{topic}/{partition}"] = max(0, int(offset) - int((end or {}).get(topic, {}).get(partition, 0)))
    return lag


class SpeedJob:
    """Runs the query, records timing and idle progress, and restarts it from its checkpoint when a batch fails."""

    def __init__(self, spark: SparkSession, config: SpeedConfig, writer: MicroBatchWriter, log: Callable[[str], None]) -> None:
        self.spark = spark
        self.config = config
        self.writer = writer
        self.log = log
        self._stop = threading.Event()
        self._recorded: set[int] = set()

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def _start(self):
        # A processing-time trigger even for --once: Spark 4.1's availableNow trigger fails to restart on a batch
        # that a crash left uncommitted (its progress reporter dereferences a missing latest offset).
        writer = kafka_stream(self.spark, self.config).writeStream.foreachBatch(self.writer)
        writer = writer.option("checkpointLocation", self.config.checkpoint).queryName("braid-speed")
        return writer.trigger(processingTime=f"{self.config.trigger_seconds} seconds").start()

    def _end_offsets(self) -> dict[str, int]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.config.bootstrap_servers, enable_auto_commit=False, **self.config.kafka_security.client_config()
        )
        try:
            # Metadata of a just-created topic can lag; an empty answer must not read as "nothing to do".
            deadline = time.monotonic() + 30
            while not (known := consumer.partitions_for_topic(self.config.topic)) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not known:
                raise BraidError(f"speed: topic {self.config.topic} has no partitions (does it exist? see `braid topics create`)")
            partitions = [TopicPartition(self.config.topic, p) for p in known]
            return {str(tp.partition): offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()

    def _reached(self, query, targets: dict[str, int]) -> bool:
        """Whether the query has committed every offset up to `targets` (what Kafka held when --once started)."""
        if not targets or all(offset == 0 for offset in targets.values()):
            return True
        progress = query.lastProgress
        if progress is None or query.status.get("isTriggerActive"):
            return False
        committed: dict[str, int] = {}
        for source in progress.get("sources", []):
            committed.update(_offsets(source.get("endOffset")).get(self.config.topic, {}))
        return all(int(committed.get(partition, 0)) >= offset for partition, offset in targets.items())

    def _record_progress(self, query) -> None:
        for progress in query.recentProgress:
            batch_id = progress.get("batchId")
            if batch_id is None or batch_id in self._recorded or not progress.get("numInputRows"):
                continue
            self._recorded.add(batch_id)
            try:
                self.writer.store.record_timing(batch_id, progress, _lag(progress))
            except Exception as error:  # metrics are best effort; the data path has its own guarantees
                self.log(f"speed: could not record timing of batch {batch_id}: {error}")

    def _mark_complete_until_now(self, now_ms: float) -> None:
        # Any batch that starts after `now_ms` gets a later timestamp, so every bucket before now's is complete.
        bucket = int(now_ms // (self.config.bucket_seconds * 1000)) - 1
        if self.writer.advance_complete_through(bucket):
            self.writer.store.record_complete_through(bucket)

    def _mark_idle(self, query) -> None:
        now_ms = time.time() * 1000  # read before the status: a trigger starting after this gets a later timestamp
        if not query.status.get("isTriggerActive"):
            self._mark_complete_until_now(now_ms)

    def run(self, *, once: bool = False, max_restarts: int | None = None, backoff_seconds: float = 5.0) -> None:
        restarts = 0
        targets = self._end_offsets() if once else {}
        while not self._stop.is_set():
            try:
                query = self._start()
            except Exception as error:
                query, failure = None, error
            else:
                failure = None
                while query.isActive and not self._stop.is_set():
                    try:
                        query.awaitTermination(1.0)
                    except StreamingQueryException:
                        break  # handled below, from query.exception()
                    self._record_progress(query)
                    if once and self._reached(query, targets):
                        query.stop()
                        break
                    if not once:
                        try:
                            self._mark_idle(query)
                        except Exception as error:
                            self.log(f"speed: could not record progress: {error}")
                if self._stop.is_set() and query.isActive:
                    query.stop()
                failure = query.exception()
                self._record_progress(query)
            if failure is None:
                if once:
                    self._mark_complete_until_now(time.time() * 1000)  # the query has stopped: nothing is in flight
                return
            restarts += 1
            message = storage_failure(failure) or failure_summary(failure)
            if max_restarts is not None and restarts > max_restarts:
                raise BraidError(f"speed: the query failed {restarts} times; last: {message}")
            self.log(f"speed: the query failed ({message}); restarting from the checkpoint in {backoff_seconds:.0f}s")
            self._stop.wait(backoff_seconds)



def failure_summary(failure: BaseException) -> str:
    """One line saying what failed. An error raised in the micro-batch function reaches us through py4j as
    "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):" and the frames;
    the line that names the error (`cassandra.cluster.NoHostAvailable: ...`) is the first unindented one after them."""
    lines = str(failure).strip().splitlines()
    if not lines:
        return type(failure).__name__
    for index, line in enumerate(lines):
        if line.rstrip().endswith("Traceback (most recent call last):"):
            cause = next((later for later in lines[index + 1 :] if later.strip() and not later[0].isspace()), None)
            if cause is not None:
                return cause.strip()[:300]
    return lines[0].strip()[:300]


def install_signal_handlers(job: SpeedJob) -> None:
    signal.signal(signal.SIGTERM, job.request_stop)
    signal.signal(signal.SIGINT, job.request_stop)
