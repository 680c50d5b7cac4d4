"""The speed layer's streaming job: Kafka -> classify -> Delta master dataset + quarantine -> speed views in Cassandra.

Exactly once, by construction:
- Spark's offset log fixes each micro-batch's offsets and timestamp before it runs; a replay sees the same records
  and the same timestamp (read back from the log), so the same handoff bucket.
- The archive's Delta appends are tagged with (application id, the group's last batch id), and a group redone after
  a crash skips the tables whose history holds its tag (`speed/archive.py`).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from braid.errors import BraidError, storage_failure
from braid.kafka import KafkaSecurity
from braid.layout import shard_of
from braid.view_compiler import aggregate_cells, metric_kind
from schemas.contracts import Contract
from schemas.views import View
from speed import delta_io
from speed.archive import Archive, Handed, kafka_batch
from speed.offset_log import OffsetLog
from speed.cassandra_io import SpeedStore
from speed.seen import RecentIds, SeenIds
from speed.facts import copies_of, figures, later_copies, positions, valid_of_type, view_cells
from speed.transforms import BatchRecords, classify, earlier_copies, horizon_hashes, stamped

# How long the ids of a micro-batch stay in memory after the archive committed it: a re-sent event usually follows its
# first copy within seconds, and confirming it from memory spares a Delta read in the view path.
RECENT_IDS_MS = 60_000


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
    archive_seconds: float = 10.0  # how long the archive gathers micro-batches into one Delta commit per table
    archive_max_seconds: float = 30.0  # the longest it stretches that wait when its commits are slow
    archive_max_pending_rows: int = 1_000_000  # the view path waits while the archive holds more (back-pressure)


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
    return reader.load()


class MicroBatchWriter:
    """The foreachBatch function of the view path: classify, count each event once, write the speed views, and hand
    the micro-batch to the archive. Nothing here waits for a Delta commit."""

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
        self.archive: Archive | None = None  # set by SpeedJob before the query starts
        self.offset_log: OffsetLog | None = None  # ditto: each micro-batch's timestamp is read from it
        self.last_batch: int | None = None
        self.seen = SeenIds(config.dedup_horizon_buckets)
        self.recent = RecentIds(RECENT_IDS_MS)
        self._kinds = {
            (view.name, metric.name): metric_kind(metric, registry, view) for view in views.values() for metric in view.metrics
        }
        self._records = BatchRecords(registry, list(views.values()), self._kinds)

    def app_id(self, spark: SparkSession) -> str:
        # The query id lives in the checkpoint: a new checkpoint is a new application to Delta, a restart is not.
        if self._app_id is None:
            metadata = spark.read.text(f"{self.config.checkpoint}/metadata").first()[0]
            self._app_id = f"braid-speed-{json.loads(metadata)['id']}"
        return self._app_id

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        config = self.config
        archive = self.archive
        assert archive is not None and self.offset_log is not None, "attached before the query starts"
        archive.check()  # a failed commit fails the view path too, before it writes anything
        # The timestamp Spark fixed for this micro-batch (its `current_timestamp()`), kept out of the plan: see
        # speed/transforms.py on why the plan holds no value of its micro-batch.
        batch_ms = self.offset_log.timestamp_ms(batch_id)
        # A task per core rather than per Kafka partition: each task pays for its own projections and Python worker
        # round trip, and six partitions on two cores made three rounds of them (a no-op with fewer partitions).
        batch = batch.coalesce(spark.sparkContext.defaultParallelism)
        classified = classify(batch, batch_ms, config.rules_file).persist()
        handed = False
        phases: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            phases[name] = round(time.perf_counter() - clock, 3)
            clock = time.perf_counter()

        try:
            # One stage materialises the classification and brings back every record's small columns and view cells.
            records = stamped(self._records(classified).toArrow(), batch_ms, config.bucket_seconds)
            facts = records.drop_columns(["cells"])
            batch_figures = figures(facts)
            if batch_figures is None:
                self.seen.skipped(batch_id)
                archive.submit(Handed(batch_id, None, {}, 0))
                return
            lap("classify")
            bucket, by_reason, valid_by_type = batch_figures.bucket, batch_figures.by_reason, batch_figures.valid_by_type
            if by_reason and config.dead_letter_topic:
                self._send_dead_letters(classified, batch_id)
                lap("dead_letters")
            if self.seen.next_batch != batch_id:
                archive.wait_through(batch_id - 1)  # the index is read from Delta: every earlier batch must be there
                self._load_seen(spark, batch_id, bucket)
                lap("dedup_index_load")
            self.recent.forget(archive.archived_through, batch_figures.batch_ms)
            # Which copies the views count: the first of each id within the batch, none an earlier batch brought.
            committed, repeated = {}, []
            for event_type in valid_by_type:
                valid = valid_of_type(facts, event_type)
                hashes = valid.column("hash").to_numpy()
                committed[event_type] = (valid.column("handoff_bucket").to_numpy(), hashes, valid.column("event_id"))
                skip = later_copies(valid) | copies_of(valid, self._earlier(spark, event_type, valid, bucket, batch_id))
                if skip.any():
                    repeated.append(positions(valid.filter(pa.array(skip))))
            lap("dedup")
            rows = self._view_rows(records, np.concatenate(repeated) if repeated else None, batch_id)
            lap("views")
            self.store.index_buckets({(row[0], row[1]) for row in rows})  # before the rows: a reader finds every bucket
            written = self.store.write_view_rows(rows)
            lap("cassandra")
            finished_ms = time.time() * 1000
            produced = batch_figures.produced_ms
            summary = {
                "input_rows": batch_figures.rows,
                "valid_rows": sum(valid_by_type.values()),
                "quarantined_rows": sum(by_reason.values()),
                "quarantine_by_reason": by_reason,
                "view_rows": written,
                # produced (Kafka timestamp) -> visible in Cassandra: the ages of the batch's produce-time percentiles
                **{f"freshness_{name}_ms": int(finished_ms - produced[index]) for index, name in enumerate(("p50", "p95", "p99"))},
                "freshness_max_ms": int(finished_ms - batch_figures.oldest_ms),
                "max_offsets": batch_figures.max_offsets,
            }
            self.store.record_batch(batch_id, bucket, summary)
            for event_type, (buckets, hashes, event_ids) in committed.items():
                self.seen.add(event_type, buckets, hashes)
                self.recent.add(batch_id, event_type, batch_figures.batch_ms, hashes, event_ids)
            self.seen.committed(batch_id, bucket)
            self.last_batch = batch_id
            archive.submit(Handed(batch_id, classified, valid_by_type, summary["quarantined_rows"], batch_ms))
            handed = True
            # Every later micro-batch has a later timestamp: the buckets before this one's are complete once the
            # archive holds this batch.
            archive.complete(batch_id, bucket - 1)
            lap("handover")
            self.log(
                f"speed: batch {batch_id} (bucket {bucket}): {summary['input_rows']} records, {summary['valid_rows']} valid, "
                f"{summary['quarantined_rows']} quarantined, {written} view rows, freshness p50 {summary['freshness_p50_ms']} ms; "
                f"seconds: {phases}"
            )
        finally:
            if not handed:
                classified.unpersist()

    def _load_seen(self, spark: SparkSession, batch_id: int, bucket: int) -> None:
        """The de-duplication index for the batches before `batch_id`, from the master dataset (one scan of the horizon)."""
        self.seen.reset(batch_id)
        self.recent.clear()
        for event_type in self.registry:
            master = delta_io.read_table(spark, delta_io.master_path(self.config.lake_root, event_type))
            if master is None:
                continue
            entries = horizon_hashes(master, batch_id, bucket, self.config.dedup_horizon_buckets).toArrow()
            self.seen.add(event_type, entries.column("handoff_bucket").to_numpy(), entries.column("hash").to_numpy())
        self.log(f"speed: de-duplication index loaded for batch {batch_id}: {self.seen.size()} event ids within the horizon")

    def _earlier(self, spark: SparkSession, event_type: str, valid: pa.Table, bucket: int, batch_id: int) -> set[str]:
        """The ids among this batch's valid events of `event_type` that an earlier batch within the horizon brought.
        An index hit is confirmed by the ids themselves: those of recent batches from memory, and only when that does
        not settle every hit, those of archived batches from Delta (a hash collision matches no id)."""
        hashes = valid.column("hash").to_numpy()
        held, buckets = self.seen.held(event_type, bucket, hashes)
        if not len(held):
            return set()
        hit = np.isin(hashes, held)
        candidates = set(valid.column("event_id").filter(hit).to_pylist())
        recent = self.recent.ids_with(event_type, held, batch_id) & candidates
        if candidates <= recent:
            return recent
        master = delta_io.read_table(spark, delta_io.master_path(self.config.lake_root, event_type))
        if master is None:
            return recent  # nothing of this type archived yet: the recent batches are all there is
        unsettled = sorted({int(h) for h, event_id in zip(hashes[hit].tolist(), valid.column("event_id").filter(hit).to_pylist()) if event_id not in recent})
        lookup = spark.createDataFrame([(value,) for value in unsettled], "hash bigint")
        return recent | {row.event_id for row in earlier_copies(master, batch_id, buckets, lookup).collect()}

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

    def _view_rows(self, records: pa.Table, repeated: np.ndarray | None, batch_id: int) -> list[tuple]:
        """The rows of `speed_views` from the batch's cells, leaving out the copies at `repeated` positions."""
        cells = view_cells(records, repeated)
        aggregated = aggregate_cells(cells, ["handoff_bucket"])
        rows: dict[tuple, tuple[dict[str, int], dict[str, float]]] = {}
        shards: dict[str, int] = {}
        columns = [aggregated.column(name).to_pylist() for name in ("view", "handoff_bucket", "key", "window_ms", "metric", "int_value", "float_value")]
        for view, bucket, key, window_ms, metric, int_value, float_value in zip(*columns):
            shard = shards.get(key)
            if shard is None:
                shard = shards[key] = shard_of(key, self.config.view_shards)
            ints, floats = rows.setdefault((view, bucket, shard, key, window_ms), ({}, {}))
            if self._kinds[(view, metric)] == "int":
                if int_value is not None:
                    ints[metric] = int(int_value)
            elif float_value is not None:
                floats[metric] = float(float_value)
        return [
            (view, bucket, shard, key, datetime.fromtimestamp(window_ms / 1000, UTC), batch_id, ints, floats)
            for (view, bucket, shard, key, window_ms), (ints, floats) in rows.items()
        ]


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
        offset_log = OffsetLog(spark, config.checkpoint, config.topic)
        progress = writer.store.progress()
        reader = {"kafka.bootstrap.servers": ",".join(config.bootstrap_servers), **config.kafka_security.spark_options()}
        self.archive = Archive(
            spark,
            offset_log=offset_log,
            registry=writer.registry,
            lake_root=config.lake_root,
            app_id=lambda: writer.app_id(spark),
            rebuild=lambda logged: kafka_batch(spark, reader, config.topic, logged, config.rules_file),
            bucket_seconds=config.bucket_seconds,
            publish_complete=writer.store.record_complete_through,
            complete_through=progress.complete_through if progress and progress.complete_through is not None else -1,
            interval_seconds=config.archive_seconds,
            max_interval_seconds=config.archive_max_seconds,
            max_pending_rows=config.archive_max_pending_rows,
            log=log,
        )
        writer.archive = self.archive
        writer.offset_log = offset_log
        self._stop = threading.Event()
        self._recorded: set[int] = set()
        self._replay_pending = True

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def _start(self):
        # A processing-time trigger even for --once: Spark 4.1's availableNow trigger fails to restart on a batch
        # that a crash left uncommitted (its progress reporter dereferences a missing latest offset).
        writer = kafka_stream(self.spark, self.config).writeStream.foreachBatch(self.writer)
        writer = writer.option("checkpointLocation", self.config.checkpoint).queryName("braid-speed")
        return writer.trigger(processingTime=f"{int(self.config.trigger_seconds * 1000)} milliseconds").start()

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
            durations = progress.get("durationMs", {})
            self.log(f"speed: batch {batch_id} took {durations.get('triggerExecution')} ms, of which Spark's own: " + ", ".join(
                f"{name} {durations[name]}" for name in ("latestOffset", "queryPlanning", "getBatch", "walCommit", "commitOffsets") if name in durations))
            try:
                self.writer.store.record_timing(batch_id, progress, _lag(progress))
            except Exception as error:  # metrics are best effort; the data path has its own guarantees
                self.log(f"speed: could not record timing of batch {batch_id}: {error}")

    def _mark_complete_until_now(self, now_ms: float) -> None:
        # Any batch that starts after `now_ms` gets a later timestamp, so every bucket before now's is complete once
        # the batches the view path finished are archived.
        bucket = int(now_ms // (self.config.bucket_seconds * 1000)) - 1
        archive = self.writer.archive
        archive.complete(self.writer.last_batch if self.writer.last_batch is not None else archive.archived_through, bucket)

    def _mark_idle(self, query) -> None:
        now_ms = time.time() * 1000  # read before the status: a trigger starting after this gets a later timestamp
        # A batch replayed after a restart keeps its old timestamp: not before the first trigger of this run then.
        if (query.lastProgress is not None or not self._replay_pending) and not query.status.get("isTriggerActive"):
            self._mark_complete_until_now(now_ms)

    def _begin(self):
        """Archive what the last run left, then start the view query (the index is reloaded by its first batch)."""
        self.writer.seen.reset(-1)
        self.archive.stop()
        self.archive.recover()
        planned, finished = self.archive.offset_log.last_planned(), self.archive.offset_log.last_committed()
        self._replay_pending = planned is not None and planned != finished
        self.archive.start()
        return self._start()

    def run(self, *, once: bool = False, max_restarts: int | None = None, backoff_seconds: float = 5.0) -> None:
        restarts = 0
        targets = self._end_offsets() if once else {}
        try:
            while not self._stop.is_set():
                try:
                    query = self._begin()
                except Exception as error:
                    query, failure = None, error
                else:
                    failure = None
                    while query.isActive and not self._stop.is_set():
                        try:
                            query.awaitTermination(0.25)
                        except StreamingQueryException:
                            break  # handled below, from query.exception()
                        try:
                            # A failed archive commit fails the next micro-batch; with no input there is none, and
                            # the failure must not wait for the next event to be seen and retried.
                            self.archive.check()
                        except Exception as error:
                            failure = error
                            query.stop()
                            break
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
                    failure = failure or query.exception()
                    self._record_progress(query)
                    if failure is None and once:
                        try:
                            self.archive.drain()
                            self._mark_complete_until_now(time.time() * 1000)  # the query has stopped: nothing is in flight
                        except Exception as error:
                            failure = error
                if failure is None:
                    return
                restarts += 1
                message = storage_failure(failure) or failure_summary(failure)
                if max_restarts is not None and restarts > max_restarts:
                    raise BraidError(f"speed: the query failed {restarts} times; last: {message}")
                self.log(f"speed: the query failed ({message}); restarting from the checkpoint in {backoff_seconds:.0f}s")
                self._stop.wait(backoff_seconds)
        finally:
            self.archive.stop()


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
