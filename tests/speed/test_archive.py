"""The archive's commits (speed/archive.py, speed/delta_io.py) on real Spark and Delta: each append is tagged with its
writer and group, a tag is found in the table's history however many commits came after it, and a group a crash
left half-committed is redone into the tables that lack it only. The accounts are plain Python over the generated
records."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from braid.generator import EventGenerator, GeneratorConfig
from schemas.contracts import default_contracts
from speed import delta_io
from speed.archive import Archive
from speed.offset_log import LoggedBatch
from speed.transforms import classify, master_rows, quarantine_rows, with_ingestion

pytestmark = pytest.mark.spark


def _rows(spark, n: int, start: int = 0):
    from pyspark.sql import functions as F

    return spark.range(start, start + n).select(F.col("id"), F.to_date(F.current_timestamp()).alias("ingest_date"))


def test_a_tag_is_found_behind_other_commits_and_only_for_its_writer_and_group(spark, tmp_path: Path) -> None:
    path = str(tmp_path / "table")
    now_ms = int(time.time() * 1000)
    assert not delta_io.committed(spark, path, app_id="a", batch_id=5, since_ms=now_ms)  # no table yet
    delta_io.append_tagged(_rows(spark, 3), path, app_id="a", batch_id=5)
    delta_io.append_tagged(_rows(spark, 3, 3), path, app_id="b", batch_id=9)
    for i in range(20):  # another writer's untagged commits: more than the first page of history
        _rows(spark, 1, 100 + i).write.format("delta").mode("append").option("userMetadata", "not a tag").save(path)
    assert delta_io.committed(spark, path, app_id="a", batch_id=5, since_ms=now_ms)
    assert delta_io.committed(spark, path, app_id="a", batch_id=4, since_ms=now_ms)  # an earlier group is in too
    assert not delta_io.committed(spark, path, app_id="a", batch_id=6, since_ms=now_ms)  # a's newest commit is an earlier group
    assert delta_io.committed(spark, path, app_id="b", batch_id=9, since_ms=now_ms)
    assert delta_io.committed(spark, path, app_id="c", batch_id=1, since_ms=now_ms) is False  # the whole history read
    # A group's commits come after its manifest: the scan stops at commits older than it (less an hour for clocks)
    later = now_ms + delta_io.CLOCK_SKEW_MS + 600_000
    assert delta_io.committed(spark, path, app_id="a", batch_id=5, since_ms=later) is False
    assert spark.read.format("delta").load(path).count() == 26
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").where("userMetadata LIKE '{%'").collect()
    assert sorted(row.userMetadata for row in history) == ['{"app": "a", "batch": 5}', '{"app": "b", "batch": 9}']
    assert all(row.operationParameters.get("mode") == "Append" for row in history)


def test_a_history_cut_by_log_retention_leaves_the_answer_to_the_rows(spark, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    path = str(tmp_path / "table")
    now_ms = int(time.time() * 1000)
    stamp = now_ms - 5000

    def batch(speed_batch: int, ms: int):
        return spark.range(2).select(F.lit(speed_batch).cast("bigint").alias("speed_batch"), F.timestamp_millis(F.lit(ms)).alias("ingested_at"),
                                     F.to_date(F.current_timestamp()).alias("ingest_date"))  # fmt: skip

    delta_io.append_tagged(batch(3, stamp), path, app_id="a", batch_id=3)
    for i in range(3):
        _rows(spark, 1, i).select(F.lit(None).cast("bigint").alias("speed_batch"), F.lit(None).cast("timestamp").alias("ingested_at"),
                                  "ingest_date").write.format("delta").mode("append").save(path)  # fmt: skip
    # What Delta's log cleanup leaves after a checkpoint: the commits before it are gone, the tag with them.
    log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
    log.checkpoint()
    for commit in sorted((tmp_path / "table" / "_delta_log").glob("0000000000000000000[0-2].*")):
        commit.unlink()
    assert delta_io.committed(spark, path, app_id="a", batch_id=3, since_ms=now_ms - 10_000) is None
    assert delta_io.holds_batches(spark, path, {3: stamp})
    assert not delta_io.holds_batches(spark, path, {3: stamp + 1})  # the same id from another checkpoint
    assert not delta_io.holds_batches(spark, path, {4: stamp})


class _OffsetLog:
    """The archive's view of Spark's offset log and its manifests, for a checkpoint that finished two micro-batches."""

    def __init__(self, manifest: dict, timestamps: dict[int, int]) -> None:
        self.manifests = {manifest["last"] + 1: manifest}
        self.timestamps = timestamps

    def groups(self) -> list[int]:
        return sorted(self.manifests)

    def read_group(self, last: int) -> dict:
        return self.manifests[last]

    def write_group(self, last: int, payload: dict) -> None:
        self.manifests[last] = payload

    def last_committed(self) -> int:
        return max(self.timestamps)

    def batch(self, batch_id: int) -> LoggedBatch:
        return LoggedBatch(batch_id, self.timestamps[batch_id], {}, {})

    def forget_groups(self, keep: int) -> None:
        pass


@pytest.mark.parametrize("previous", [False, True], ids=["tagged", "by-an-archive-of-transaction-ids"])
def test_a_half_committed_group_is_redone_into_the_tables_that_lack_it(spark, tmp_path: Path, previous: bool) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, IntegerType, LongType, StringType, StructField, StructType, TimestampType

    config = GeneratorConfig(seed=44, count=400, start=datetime.now(UTC), late_fraction=0.0, duplicate_fraction=0.05, malformed_fraction=0.1)
    records = list(EventGenerator(config).records())
    schema = StructType([StructField("key", BinaryType()), StructField("value", BinaryType()), StructField("topic", StringType()),
                         StructField("partition", IntegerType()), StructField("offset", LongType()),
                         StructField("timestamp", TimestampType()), StructField("timestampType", IntegerType())])  # fmt: skip
    produced = datetime.now(UTC).replace(tzinfo=None)
    kafka = spark.createDataFrame([(r.key, r.value, "events", 0, i, produced, 0) for i, r in enumerate(records)], schema)
    now_ms = int(time.time() * 1000)
    halves = {5: (0, 200), 6: (200, 400)}  # two micro-batches of the group, by offset
    timestamps = {5: now_ms - 2000, 6: now_ms - 1000}

    def rebuild(logged: LoggedBatch):
        first, end = halves[logged.batch_id]
        return classify(kafka.where((F.col("offset") >= first) & (F.col("offset") < end)), logged.timestamp_ms).persist()

    lake = str(tmp_path / "lake")
    # The crash came after the group's quarantine commit and before its master appends. The archive before this one
    # wrote manifests without a time and keyed its appends by Delta transaction ids: its group is redone by them.
    manifest = {"first": 5, "last": 6} if previous else {"first": 5, "last": 6, "written_ms": now_ms - 500}
    rebuilt = [with_ingestion(rebuild(LoggedBatch(b, timestamps[b], {}, {})), 60, b, timestamps[b]) for b in (5, 6)]
    union = rebuilt[0].unionByName(rebuilt[1])
    # Before it, the master tables hold the job's previous group (no rows) and another writer's commit after that.
    for event_type, versions in default_contracts().items():
        nothing = master_rows(union.limit(0), event_type, versions)
        delta_io.append_tagged(nothing, delta_io.master_path(lake, event_type), app_id="speed-q", batch_id=4)
        nothing.write.format("delta").mode("append").save(delta_io.master_path(lake, event_type))
    append = delta_io.append_once if previous else delta_io.append_tagged
    append(quarantine_rows(union), delta_io.quarantine_path(lake), app_id="speed-q", batch_id=6)

    def archive() -> Archive:
        return Archive(spark, offset_log=_OffsetLog(manifest, timestamps), registry=default_contracts(), lake_root=lake,
                       app_id=lambda: "speed-q", rebuild=rebuild, bucket_seconds=60, publish_complete=lambda bucket: None,
                       complete_through=-1, interval_seconds=1.0, max_interval_seconds=1.0, max_pending_rows=10_000,
                       log=lambda message: None)  # fmt: skip

    valid = Counter(r.event["event_type"] for r in records if r.event is not None)
    malformed = Counter(r.expected_reason for r in records if r.event is None)
    assert valid and malformed and set(valid) <= set(default_contracts())

    def account() -> tuple[Counter, Counter]:
        master = Counter({t: spark.read.format("delta").load(delta_io.master_path(lake, t)).count() for t in valid})
        quarantine = spark.read.format("delta").load(delta_io.quarantine_path(lake))
        return master, Counter(row.reason for row in quarantine.select("reason").collect())

    for attempt in range(2):  # redone, then redone again (a crash right after the redo): nothing twice
        redone = archive()
        redone.recover()
        assert redone.archived_through == 6
        assert account() == (valid, malformed), attempt
    batches = spark.read.format("delta").load(delta_io.master_path(lake, next(iter(valid)))).select("speed_batch").distinct().collect()
    assert sorted(row.speed_batch for row in batches) == [5, 6]
