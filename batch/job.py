"""Wiring of the batch layer: settings -> connections and declarations -> the stages, all at once or one by one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from pyspark.sql import SparkSession

from batch import stages
from batch.cassandra_io import BatchStore, CassandraTarget, VersionRecord
from braid.cassandra import cluster_from_settings
from braid.errors import BraidError
from braid.settings import Settings
from schemas.contracts import default_contracts, rules
from schemas.views import default_views

SPARK_STAGES = ("validate-snapshot", "recompute", "validate-views", "publish")


@contextmanager
def batch_context(settings: Settings, log: Callable[[str], None] = print) -> Iterator[stages.BatchContext]:
    password = settings.cassandra_password.get_secret_value() if settings.cassandra_password else None
    target = CassandraTarget(
        contact_points=settings.cassandra_contact_points,
        port=settings.cassandra_port,
        keyspace=settings.cassandra_keyspace,
        local_datacenter=settings.cassandra_local_datacenter,
        username=settings.cassandra_username,
        password=password,
        write_consistency=settings.cassandra_write_consistency,
        concurrency=settings.batch_publish_concurrency,
    )
    cluster = cluster_from_settings(settings)
    try:
        store = BatchStore(
            cluster.connect(settings.cassandra_keyspace),
            write_consistency=settings.cassandra_write_consistency,
            read_consistency=settings.cassandra_read_consistency,
        )
        yield stages.BatchContext(
            lake_root=settings.lake_root,
            quality_root=str(settings.quality_root),
            retire_grace=timedelta(seconds=settings.batch_retire_grace_seconds),
            target=target,
            store=store,
            registry=default_contracts(),
            views=default_views(),
            rules=rules(settings.rules_file),
            log=log,
        )
    finally:
        cluster.shutdown()


def new_run_id() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def run_all(spark: SparkSession, context: stages.BatchContext, run_id: str, cutoff: int | None, mode: str) -> VersionRecord:
    record = stages.pick_cutoff(context, run_id, cutoff, mode)
    for name in SPARK_STAGES:
        record = run_stage(spark, context, name, record)
    stages.retire(context)
    return record


def run_stage(spark: SparkSession, context: stages.BatchContext, name: str, record: VersionRecord) -> VersionRecord:
    steps = {
        "validate-snapshot": stages.validate_snapshot,
        "recompute": stages.recompute,
        "validate-views": stages.validate_views,
        "publish": stages.publish,
    }
    return steps[name](spark, context, record)


def record_of_run(context: stages.BatchContext, run_id: str) -> VersionRecord:
    record = context.store.version_of_run(run_id)
    if record is None:
        raise BraidError(f"batch: no version for run {run_id!r}; its pick-cutoff stage has not run")
    return record

