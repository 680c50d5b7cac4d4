"""The batch layer against real Kafka, Spark/Delta and Cassandra, on the session's published two-part lake (a master
dataset the speed layer wrote, tests/published_lake.py): published versions equal an independent aggregation of the
generator's records up to the cutoff; a failed quality gate and a
publish killed half-way leave the served version whole. The DAG under real Airflow with its default cutoff runs in
tests/faults/test_batch_killed_in_publish.py (its publish killed, then retried; the version it publishes is checked
against the same aggregation and traced back to the Airflow run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from batch.cassandra_io import PUBLISHED, RETIRED, SUPERSEDED
from batch.job import SPARK_STAGES, batch_context, new_run_id, run_all, run_stage
from batch.stages import FULL, INCREMENTAL, QualityGateFailed, pick_cutoff
from batch.submit import spark_submit_command
from braid.cassandra import cluster_from_settings
from schemas.views import default_views
from tests.published_lake import Lake
from tests.speed.test_speed_job import _wait

pytestmark = [pytest.mark.services, pytest.mark.spark]


@pytest.fixture(scope="module")
def lake(published_lake: Lake, tmp_path_factory) -> Lake:
    """The session's published two-part lake, forked: these tests publish past it (tests/published_lake.py)."""
    return published_lake.fork(tmp_path_factory.mktemp("batch"))


def rows_per_view(expected: dict) -> dict[str, int]:
    return {name: sum(1 for key in expected if key[0] == name) for name in default_views()}


def test_full_recompute_publishes_the_exact_views_up_to_the_cutoff(published_lake: Lake) -> None:
    lake, first = published_lake, published_lake.first
    assert first.record.state == PUBLISHED and first.record.cutoff == lake.cutoff_a
    assert first.retired_through == lake.cutoff_a  # nothing older than the first version is readable
    assert first.speed_buckets and min(first.speed_buckets) > lake.cutoff_a  # A's speed rows are retired, B's are still needed
    version, cutoff, rows = first.served
    assert (version, cutoff) == (first.record.version, lake.cutoff_a)
    assert rows == lake.expected(lake.sent_a)
    assert lake.expected(lake.sent_a) != lake.expected(3000)  # B is beyond the cutoff, and would change the answer
    # the Delta view tables hold the same version, time-travel-able by the Delta version the record names
    assert first.view_table_versions == {first.record.version}
    assert first.view_table_rows == sum(1 for key in rows if key[0] == "payments_by_merchant")
    # the rows the record counts (from each view table's commit) are the oracle's, view by view
    assert first.record.view_rows == rows_per_view(lake.expected(lake.sent_a))
    assert lake.served() == first.served  # the session's shared lake: no reader of it published past A


def test_incremental_equals_full(spark, lake: Lake) -> None:
    with batch_context(lake.settings, log=lambda m: None) as context:
        incremental = run_all(spark, context, new_run_id(), lake.cutoff_b, INCREMENTAL)
        assert incremental.mode == INCREMENTAL
        session = cluster_from_settings(lake.settings).connect(lake.settings.cassandra_keyspace)
        incremental_rows = Lake.rows(session, incremental.version)
        full = run_all(spark, context, new_run_id(), lake.cutoff_b, FULL)
        full_rows = Lake.rows(session, full.version)
        session.cluster.shutdown()
        assert context.store.version(incremental.version).state == SUPERSEDED
        recorded = (context.store.version(incremental.version).view_rows, context.store.version(full.version).view_rows)
    assert incremental_rows == full_rows == lake.expected(3000)
    assert recorded == (rows_per_view(lake.expected(3000)),) * 2
    assert lake.served() == (full.version, lake.cutoff_b, full_rows)


def test_a_failing_expectation_blocks_the_publish(spark, lake: Lake) -> None:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    with batch_context(lake.settings, log=lambda m: None) as context:
        before = lake.served()
        path = f"{lake.settings.lake_root}/master/payment"
        table_version = DeltaTable.forPath(spark, path).history(1).first()["version"]
        # A row no contract allows, as a bug upstream of the master dataset would write it: an unknown currency.
        bad = spark.read.format("delta").load(path).limit(1).withColumn("event_id", F.lit("bad-currency-1"))
        bad = bad.withColumn("payload", F.col("payload").withField("currency", F.lit("XXX"))).withColumn("handoff_bucket", F.lit(lake.cutoff_b + 1).cast("bigint"))
        bad.write.format("delta").mode("append").save(path)
        try:
            with pytest.raises(QualityGateFailed, match=r"snapshot_payment: 1 of \d+ failed: expect_column_values_to_be_in_set\(payload_currency\)"):
                run_all(spark, context, "blocked-run", lake.cutoff_b + 1, FULL)
            record = context.store.version_of_run("blocked-run")
            assert record.state not in (PUBLISHED, SUPERSEDED) and "payload_currency" in record.quality
            assert lake.served() == before  # the old version is still served, whole
            docs = Path(lake.settings.quality_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
            assert docs.exists() and "snapshot_payment" in docs.read_text()
        finally:
            DeltaTable.forPath(spark, path).restoreToVersion(table_version)


def test_a_publish_killed_half_way_then_rerun_only_ever_serves_whole_versions(spark, lake: Lake, tmp_path: Path) -> None:
    expected = {lake.cutoff_a: lake.expected(lake.sent_a), lake.cutoff_b: lake.expected(3000)}
    seen, problems, stop = [], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            version, cutoff, rows = lake.served()
            seen.append(version)
            if rows != expected[cutoff]:
                problems.append(f"version {version}: {len(rows)} rows, not the {len(expected[cutoff])} of cutoff {cutoff}")
            time.sleep(0.2)

    before = lake.served()[0]
    # The stages before the publish in this process, then the publish alone as the DAG submits it, killed half-way.
    with batch_context(lake.settings, log=lambda m: None) as context:
        record = pick_cutoff(context, "killed-run", lake.cutoff_b, FULL)
        for stage in SPARK_STAGES[:-1]:
            record = run_stage(spark, context, stage, record)
    assert SPARK_STAGES[-1] == "publish"
    env = {**os.environ, **lake.stream.env, "BRAID_BATCH_PUBLISH_CONCURRENCY": "1", "PYSPARK_PYTHON": sys.executable}  # a slow publish
    command = spark_submit_command(lake.settings, ["stage", "publish", "--run-id", "killed-run"])
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        with open(tmp_path / "batch.log", "wb") as log:
            job = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        cluster = cluster_from_settings(lake.settings)
        session = cluster.connect(lake.settings.cassandra_keyspace)
        state = session.prepare("SELECT state, version FROM batch_versions WHERE pipeline = 'views' LIMIT 1")
        count = session.prepare("SELECT count(*) FROM batch_views WHERE version = ? ALLOW FILTERING")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            row = session.execute(state).one()
            if row is not None and row.version > before and row.state == "publishing" and session.execute(count, (row.version,)).one()[0] > 0:
                os.killpg(job.pid, signal.SIGKILL)  # rows of the new version are in Cassandra, the pointer not switched yet
                break
            assert job.poll() is None, f"the batch run ended before it could be killed mid-publish:\n{(tmp_path / 'batch.log').read_text()[-3000:]}"
            time.sleep(0.05)
        job.wait()
        cluster.shutdown()
        assert lake.served()[0] == before  # killed: the pointer never moved
        with batch_context(lake.settings, log=lambda m: None) as context:  # the rerun, as Airflow's retry would run it
            assert context.store.version_of_run("killed-run").state == "publishing"
            rerun = run_all(spark, context, "killed-run", lake.cutoff_b, FULL)
        assert rerun.state == PUBLISHED
        _wait(lambda: rerun.version in seen, 120, "the reader to read the new version")  # minutes under load: the reader shares the cores
    finally:
        stop.set()
        thread.join(timeout=30)
    assert problems == []
    version, cutoff, rows = lake.served()
    assert version > before and cutoff == lake.cutoff_b and rows == expected[lake.cutoff_b]
    assert set(seen) >= {before, version}  # the reader saw both sides of the switch, each whole


def test_maintenance_deletes_what_no_reader_needs_and_keeps_time_travel(spark, lake: Lake) -> None:
    """The maintenance DAG's two passes: superseded versions past the grace lose their Cassandra rows (the served one
    stays whole); OPTIMIZE compacts, and VACUUM deletes an unreferenced file older than the retention but keeps the
    files a recent snapshot still names, so time travel to an older version keeps working."""
    from delta.tables import DeltaTable

    from batch.maintenance import compact_and_vacuum, retire_versions, tables

    old, old_rows = lake.first.record, lake.first.served[2]  # the module's first version, at A
    with batch_context(lake.settings, log=lambda m: None) as context:
        served = run_all(spark, context, new_run_id(), lake.cutoff_b, FULL)  # at B: a version never goes back, whatever ran first
        superseded = [r for r in context.store.versions(limit=200) if r.state == SUPERSEDED]
        assert old.version in {r.version for r in superseded}
        session = cluster_from_settings(lake.settings).connect(lake.settings.cassandra_keyspace)
        try:
            assert Lake.rows(session, old.version) == old_rows  # superseded but within the grace: still readable
            assert retire_versions(spark, replace(context, retire_grace=timedelta(0))) > 0
            assert {r.version: Lake.rows(session, r.version) for r in superseded} == {r.version: {} for r in superseded}
        finally:
            session.cluster.shutdown()
        assert {r.version: context.store.version(r.version).state for r in superseded} == {r.version: RETIRED for r in superseded}
        assert lake.served() == (served.version, lake.cutoff_b, lake.expected(3000))

        master = f"{lake.settings.lake_root}/master/payment"
        before = spark.read.format("delta").load(master).count()
        files_before = len(DeltaTable.forPath(spark, master).toDF().inputFiles())
        partitions = spark.read.format("delta").load(master).select("ingest_date").distinct().count()
        week_ago = time.time() - 8 * 24 * 3600
        orphan = Path(master) / "part-00000-orphan-of-a-failed-commit.snappy.parquet"
        orphan.write_bytes(b"PAR1 nothing any table version names")
        os.utime(orphan, (week_ago, week_ago))
        recent_orphan = Path(master) / "part-00000-orphan-of-a-commit-in-flight.snappy.parquet"
        recent_orphan.write_bytes(b"PAR1 a writer may still commit this")
        with pytest.raises(ValueError, match="retention 24 h is below 168 h"):
            compact_and_vacuum(spark, context, 24)
        assert orphan.exists()
        done = compact_and_vacuum(spark, context, 168)
        assert set(done) == set(tables(spark, context)) and master in done and any("/views/" in path for path in done)
    operations = {row.operation for row in DeltaTable.forPath(spark, master).history().collect()}
    assert files_before <= partitions or "OPTIMIZE" in operations
    assert len(DeltaTable.forPath(spark, master).toDF().inputFiles()) == partitions  # small data: one file per partition
    assert spark.read.format("delta").load(master).count() == before  # compaction changes files, never rows
    assert not orphan.exists() and recent_orphan.exists()  # older than the retention: gone; within it: kept
    recent_orphan.unlink()
    # Time travel within the retention: the old version's view table, as its record names it, reads back whole.
    view = "payments_by_merchant"
    table = spark.read.format("delta").option("versionAsOf", old.view_tables[view]).load(f"{lake.settings.lake_root}/views/{view}")
    assert {row.batch_version for row in table.select("batch_version").distinct().collect()} == {old.version}
    assert table.count() == sum(1 for key in old_rows if key[0] == view)
