"""The archival path of the speed layer: the view path's micro-batches, committed to the Delta master dataset and
quarantine in groups, behind the fresh views and never in front of them.

The view path (`speed/job.py`) classifies a micro-batch, writes its speed views and hands the classified rows here.
Every few seconds the archive commits all it holds as one append per table, each commit tagged with (application
id, the group's last micro-batch) in its commit info: a redone group adds nothing twice. Each row keeps what the view
path saw: the micro-batch's timestamp (its handoff bucket and `ingested_at`) and its id (`speed_batch`), so the batch
layer picks the same first copy of an event as the speed views counted.

Exactly once across crashes. Before a group's appends, its range of micro-batches goes to a manifest in the
checkpoint (`archive/<last + 1>`). On start the archive redoes the newest manifest's group (skipping the tables whose
history holds its tag, `delta_io.committed`) and then commits every micro-batch the view query finished since,
rebuilt from Kafka with the offsets and timestamp of Spark's offset log (`speed/offset_log.py`): the same records, the
same classification.

The master dataset is complete through a handoff bucket only once every micro-batch that bucket depends on is
archived; the archive publishes that (`pipeline_progress.complete_through`, the batch layer's default cutoff), not the
view path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import DataFrame, SparkSession

from braid.errors import BraidError
from schemas.contracts import Contract
from speed import delta_io
from speed.offset_log import LoggedBatch, OffsetLog
from speed.transforms import classify, master_rows, quarantine_rows, with_ingestion

POOL = "braid-archive"  # the fair-scheduler pool of the archive's Spark jobs (speed/fairscheduler.xml)
RECOVERY_GROUP_BATCHES = 50
BUSY_SHARE = 4  # the archive waits at least this many times its last group's commit time (see `_interval`)
MAX_PENDING_BATCHES = 1000  # well inside the offset log Spark keeps (spark.sql.streaming.minBatchesToRetain)


@dataclass
class Handed:
    """One micro-batch the view path finished: its classified rows (persisted) and their counts."""

    batch_id: int
    classified: DataFrame | None
    valid_by_type: dict[str, int]
    quarantined: int
    batch_ms: int = 0  # the micro-batch's timestamp (Spark's offset log): its rows' ingestion time and handoff bucket
    counted: bool = True  # False for a micro-batch rebuilt from Kafka: its counts are not known before the append
    handed_at: float = field(default_factory=time.monotonic)


class Archive:
    def __init__(
        self,
        spark: SparkSession,
        *,
        offset_log: OffsetLog,
        registry: dict[str, dict[int, Contract]],
        lake_root: str,
        app_id: Callable[[], str],
        rebuild: Callable[[LoggedBatch], DataFrame | None],
        bucket_seconds: int,
        publish_complete: Callable[[int], None],
        complete_through: int,
        interval_seconds: float,
        max_interval_seconds: float,
        max_pending_rows: int,
        log: Callable[[str], None],
    ) -> None:
        self.spark = spark
        self.offset_log = offset_log
        self.registry = registry
        self.lake_root = lake_root
        self.app_id = app_id
        self.rebuild = rebuild
        self.bucket_seconds = bucket_seconds
        self.publish_complete = publish_complete
        self.complete_through = complete_through
        self.interval_seconds = interval_seconds
        self.max_interval_seconds = max_interval_seconds  # BRAID_SPEED_ARCHIVE_MAX_SECONDS; BRAID_SPEED_ARCHIVE_SECONDS wins if larger
        self.max_pending_rows = max_pending_rows
        self.log = log
        self.archived_through = -1
        self._pending: list[Handed] = []
        self._marks: list[tuple[int, int]] = []  # (micro-batch that must be archived, bucket then complete)
        self._cond = threading.Condition()
        self._failure: BaseException | None = None
        self._drain = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.last_commit_seconds: float | None = None

    # --- the view path's side ---------------------------------------------------------------------------------------

    def submit(self, handed: Handed) -> None:
        """Take a finished micro-batch; waits while the archive holds more rows than it may (back-pressure)."""
        with self._cond:
            self._raise_failure()
            if handed.batch_id <= self.archived_through or any(h.batch_id == handed.batch_id for h in self._pending):
                if handed.classified is not None:
                    handed.classified.unpersist()
                return  # a micro-batch replayed after a restart of the query: archived or held already
            if handed.classified is None and not self._pending:
                # A micro-batch with no rows and nothing before it in flight: archived as it is, with no commit.
                self.archived_through = handed.batch_id
                self._cond.notify_all()
                return
            self._pending.append(handed)
            self._cond.notify_all()
            while (self._pending_rows() > self.max_pending_rows or len(self._pending) > MAX_PENDING_BATCHES) and self._failure is None and not self._stop:
                self._cond.wait(1.0)
            self._raise_failure()

    def complete(self, needed_batch: int, bucket: int) -> None:
        """Bucket `bucket` is complete once micro-batch `needed_batch` (and every one before it) is archived."""
        with self._cond:
            self._marks.append((needed_batch, bucket))
        self._publish()

    def wait_through(self, batch_id: int, timeout: float = 600.0) -> None:
        """Until every micro-batch up to `batch_id` is in Delta (the view path's de-duplication index reads it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._drain = True
            self._cond.notify_all()
            while self.archived_through < batch_id:
                self._raise_failure()
                if not self._pending and (self._thread is None or not self._thread.is_alive()):
                    raise BraidError(f"speed: micro-batch {batch_id} was never handed to the archive")
                if time.monotonic() > deadline:
                    raise BraidError(f"speed: the archive did not reach micro-batch {batch_id} within {timeout:.0f} s")
                self._cond.wait(0.5)
            self._drain = False

    def drain(self) -> None:
        """Commit everything held now."""
        with self._cond:
            last = self._pending[-1].batch_id if self._pending else self.archived_through
        self.wait_through(last)

    def check(self) -> None:
        """Raise the error a commit failed with, if one did; or say so if the archive is not running."""
        with self._cond:
            self._raise_failure()
            if not self._stop and (self._thread is None or not self._thread.is_alive()):
                raise BraidError("speed: the archive is not running")

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _pending_rows(self) -> int:
        return sum(sum(h.valid_by_type.values()) + h.quarantined for h in self._pending)

    # --- lifecycle ----------------------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Before the view query starts: finish the group a crash interrupted, then archive every micro-batch the
        view query finished that Delta does not hold yet."""
        groups = self.offset_log.groups()
        last_committed = self.offset_log.last_committed()
        if not groups:
            # A checkpoint that predates the archive had its micro-batches committed to Delta before Spark's commit.
            through = -1 if last_committed is None else last_committed
            self.offset_log.write_group(through + 1, {"first": through + 1, "last": through})
            self.archived_through = through
        else:
            manifest = self.offset_log.read_group(groups[-1])
            first, last = int(manifest["first"]), int(manifest["last"])
            if last >= first:
                self._commit([self._rebuilt(batch_id) for batch_id in range(first, last + 1)], redo=manifest)
            self.archived_through = last
        if last_committed is not None:
            for start in range(self.archived_through + 1, last_committed + 1, RECOVERY_GROUP_BATCHES):
                end = min(start + RECOVERY_GROUP_BATCHES, last_committed + 1)
                self._commit([self._rebuilt(batch_id) for batch_id in range(start, end)])
            if last_committed > (groups[-1] - 1 if groups else -1):
                self.log(f"speed: archive recovered through micro-batch {self.archived_through}")

    def _rebuilt(self, batch_id: int) -> Handed:
        logged = self.offset_log.batch(batch_id)
        return Handed(batch_id, self.rebuild(logged), {}, 0, logged.timestamp_ms, counted=False)

    def start(self) -> None:
        self._stop, self._failure, self._drain = False, None, False
        self._thread = threading.Thread(target=self._loop, name="braid-archive", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; what it still holds is forgotten (and archived again from Kafka by the next `recover`)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        for handed in self._pending:
            if handed.classified is not None:
                handed.classified.unpersist()
        self._pending = []

    def _loop(self) -> None:
        try:
            self._run()
        except BaseException as error:  # handed to the view path, which fails its micro-batch with it
            with self._cond:
                self._failure = error
                self._cond.notify_all()
        finally:
            self.log(f"speed: the archive stopped ({'failed' if self._failure is not None else 'asked to'})")

    def _run(self) -> None:
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", POOL)
        while True:
            with self._cond:
                while not self._stop and not self._due():
                    self._cond.wait(self._wait_seconds())
                if self._stop:
                    return
                group = list(self._pending)
            try:
                self._commit(group)
            except BaseException as error:  # handed to the view path, which fails its micro-batch with it
                with self._cond:
                    self._failure = error
                    self._cond.notify_all()
                return
            with self._cond:
                self._pending = self._pending[len(group) :]
                self._cond.notify_all()
            self._publish()

    def _interval(self) -> float:
        # A group's commits cost about the same whatever its size (a Delta commit per table: snapshot, write, log),
        # and they share the cores with the view path. Waiting at least BUSY_SHARE times as long as the last group
        # took keeps the archive to a fifth of a core however slow the lake, and the groups grow instead.
        # Capped, so that the master dataset (and with it the batch layer's default cutoff) is never far behind.
        return max(self.interval_seconds, min(self.max_interval_seconds, BUSY_SHARE * (self.last_commit_seconds or 0.0)))

    def _due(self) -> bool:
        if not self._pending:
            return False
        return self._drain or time.monotonic() - self._pending[0].handed_at >= self._interval() or self._pending_rows() > self.max_pending_rows // 2

    def _wait_seconds(self) -> float:
        if not self._pending:
            return 1.0
        return max(0.05, self._interval() - (time.monotonic() - self._pending[0].handed_at))

    # --- the commits ------------------------------------------------------------------------------------------------

    def _commit(self, group: list[Handed], *, redo: dict | None = None) -> None:
        """Commit a group: its manifest first, then one tagged append per table. `redo` is the manifest of a group a
        crash may have left half-committed: a table that holds it already is skipped."""
        if not group:
            return
        started = time.perf_counter()
        first, last = group[0].batch_id, group[-1].batch_id
        if redo is None:
            self.offset_log.write_group(last + 1, {"first": first, "last": last, "written_ms": int(time.time() * 1000)})
        frames = [(h, h.classified) for h in group if h.classified is not None]
        app_id = self.app_id()

        def append(rows: DataFrame, path: str, count: int | None) -> None:
            if redo is None:
                delta_io.append_tagged(rows, path, app_id=app_id, batch_id=last, rows=count)
            elif "written_ms" not in redo:  # a group of an archive that keyed its appends by Delta transaction ids
                delta_io.append_once(rows, path, app_id=app_id, batch_id=last, rows=count)
            else:
                done = delta_io.committed(self.spark, path, app_id=app_id, batch_id=last, since_ms=int(redo["written_ms"]))
                if done is None:  # the table's history no longer reaches back to the group: its rows tell
                    done = delta_io.holds_batches(self.spark, path, {h.batch_id: h.batch_ms for h in group})
                if not done:
                    delta_io.append_tagged(rows, path, app_id=app_id, batch_id=last, rows=count)
        try:
            if frames:
                # A table gets no commit when the group has none of its rows (known for every micro-batch the view
                # path handed over; a rebuilt one is appended in any case, unless the table holds it already).
                # One union of the cached batches (each carries its id), then each table's rows from it: the plan
                # stays one scan wide however many micro-batches the group holds.
                union = _union([with_ingestion(classified, self.bucket_seconds, h.batch_id, h.batch_ms) for h, classified in frames])
                quarantined = _rows(group, None)
                if quarantined != 0:
                    append(quarantine_rows(union), delta_io.quarantine_path(self.lake_root), quarantined)
                for event_type, versions in self.registry.items():
                    count = _rows(group, event_type)
                    if count == 0:
                        continue
                    rows = master_rows(union, event_type, versions)
                    path = delta_io.master_path(self.lake_root, event_type)
                    append(rows, path, count)
        finally:
            for _, classified in frames:
                classified.unpersist()
        with self._cond:
            self.archived_through = last
            self._cond.notify_all()
        self.offset_log.forget_groups(keep=20)
        self.last_commit_seconds = round(time.perf_counter() - started, 2)
        self.log(f"speed: archived micro-batches {first}-{last} in {self.last_commit_seconds} s")

    def _publish(self) -> None:
        with self._cond:
            ready = [bucket for needed, bucket in self._marks if needed <= self.archived_through]
            self._marks = [(needed, bucket) for needed, bucket in self._marks if needed > self.archived_through]
            if not ready or max(ready) <= self.complete_through:
                return
            self.complete_through = max(ready)
            bucket = self.complete_through
        self.publish_complete(bucket)


def _union(frames: list[DataFrame]) -> DataFrame:
    return reduce(lambda left, right: left.unionByName(right, allowMissingColumns=True), frames)


def _rows(group: list[Handed], event_type: str | None) -> int | None:
    """Rows of a table in the group, when every micro-batch's counts are known (they set the number of files)."""
    if not all(h.counted for h in group):
        return None
    if event_type is None:
        return sum(h.quarantined for h in group)
    return sum(h.valid_by_type.get(event_type, 0) for h in group)


def kafka_batch(spark: SparkSession, reader_options: dict[str, str], topic: str, logged: LoggedBatch, rules_file) -> DataFrame | None:
    """A micro-batch of the view query read again from Kafka: its offsets, classified as of its timestamp."""
    import json

    if all(logged.start.get(p, 0) >= end for p, end in logged.end.items()):
        return None
    partitions = sorted(logged.end)
    frame = (
        spark.read.format("kafka")
        .options(**reader_options)
        .option("assign", json.dumps({topic: partitions}))
        .option("startingOffsets", json.dumps({topic: {str(p): logged.start[p] for p in partitions}}))
        .option("endingOffsets", json.dumps({topic: {str(p): logged.end[p] for p in partitions}}))
        .load()
    )
    return classify(frame, logged.timestamp_ms, rules_file).persist()


def scheduler_conf(home) -> dict[str, str]:
    """Spark's fair scheduler, with the view path's jobs (the stream's thread, pool `default`) weighted over the
    archive's: when both want the cores, a fresh micro-batch is not queued behind a Delta commit."""
    from pathlib import Path

    path = Path(home) / "speed-fairscheduler.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '<?xml version="1.0"?>\n<allocations>\n'
        '  <pool name="default"><schedulingMode>FIFO</schedulingMode><weight>4</weight><minShare>1</minShare></pool>\n'
        f'  <pool name="{POOL}"><schedulingMode>FIFO</schedulingMode><weight>1</weight><minShare>0</minShare></pool>\n'
        "</allocations>\n"
    )
    return {"spark.scheduler.mode": "FAIR", "spark.scheduler.allocation.file": str(path)}
