"""Entry point of the speed layer.

    braid speed run              # foreground, until Ctrl-C / SIGTERM
    braid speed run --once       # process what Kafka holds now, then stop (availableNow)
    braid speed start | stop     # in the background

On a cluster, the same job by configuration alone:
    BRAID_SPARK_MASTER=spark://master:7077 BRAID_KAFKA_BOOTSTRAP_SERVERS=k1:9092,k2:9092 \\
    BRAID_CASSANDRA_CONTACT_POINTS=c1,c2,c3 BRAID_DELTA_ROOT=s3a://lake/braid braid speed run
"""

from __future__ import annotations

from collections.abc import Callable

from braid.cassandra import cluster_from_settings
from braid.kafka import KafkaSecurity
from braid.settings import Settings
from braid.spark import session_from_settings
from schemas.contracts import default_contracts, rules
from schemas.views import default_views
from speed import delta_io
from speed.archive import scheduler_conf
from speed.cassandra_io import SpeedStore
from speed.job import MicroBatchWriter, SpeedConfig, SpeedJob, install_signal_handlers


def run_speed(
    settings: Settings,
    *,
    once: bool = False,
    log: Callable[[str], None] = print,
    max_restarts: int | None = None,
    handle_signals: bool = True,
) -> None:
    bucket_seconds = rules(settings.rules_file).handoff_bucket_seconds
    config = SpeedConfig(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.events_topic,
        lake_root=settings.lake_root,
        checkpoint=f"{settings.checkpoints}/speed",
        bucket_seconds=bucket_seconds,
        view_shards=rules(settings.rules_file).view_shards,
        dedup_horizon_buckets=settings.speed_dedup_horizon_minutes * 60 // bucket_seconds,
        trigger_seconds=settings.speed_trigger_seconds,
        max_offsets_per_trigger=settings.speed_max_offsets_per_trigger,
        dead_letter_topic=settings.dead_letter_topic if settings.speed_dead_letter else None,
        kafka_security=KafkaSecurity.from_settings(settings),
        rules_file=settings.rules_file,
        archive_seconds=settings.speed_archive_seconds,
        archive_max_seconds=settings.speed_archive_max_seconds,
        archive_max_pending_rows=settings.speed_archive_max_pending_rows,
    )
    cluster = cluster_from_settings(settings)
    try:
        store = SpeedStore(cluster.connect(settings.cassandra_keyspace))
        spark = session_from_settings(settings, "braid-speed", extra_conf={**delta_io.SPEED_SESSION_CONF, **scheduler_conf(settings.home)})
        writer = MicroBatchWriter(config, default_contracts(), default_views(), store, log)
        job = SpeedJob(spark, config, writer, log)
        if handle_signals:
            install_signal_handlers(job)
        job.run(once=once, max_restarts=max_restarts)
    finally:
        cluster.shutdown()
