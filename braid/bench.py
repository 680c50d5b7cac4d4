"""`braid bench speed`: the rate the speed layer keeps up with on this machine, and its end-to-end freshness.

For each rate: a fresh topic, lake, checkpoint and keyspace; the speed job in its own process; the generator at that
rate (~1 KB page views) for the duration; then the per-batch records the job wrote (speed_batches) give throughput,
lag and freshness (produced -> visible in Cassandra). Results go to a JSON file, one object per rate.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from braid.cassandra import cluster_from_settings, replication_map
from braid.generator import GeneratorConfig
from braid.generator_run import RunOptions, run
from braid.kafka import create_topic
from braid.migrations import load_migrations, migrate
from braid.settings import Settings, load_settings


def _weighted_percentile(pairs: list[tuple[float, int]], fraction: float) -> float | None:
    pairs = sorted(pair for pair in pairs if pair[0] is not None)
    total = sum(weight for _, weight in pairs)
    if not total:
        return None
    running = 0
    for value, weight in pairs:
        running += weight
        if running >= fraction * total:
            return value
    return pairs[-1][0]


def bench_rate(base: Settings, rate: int, duration: float, work: Path, log) -> dict[str, Any]:
    name = f"bench{rate}x{uuid.uuid4().hex[:6]}"
    overrides = {
        "events_topic": name,
        "cassandra_keyspace": name,
        "delta_root": str(work / name / "lake"),
        "checkpoint_root": str(work / name / "checkpoints"),
    }
    settings = load_settings(**overrides)
    create_topic(settings.kafka_bootstrap_servers, name, partitions=settings.topic_partitions, replication=1)
    cluster = cluster_from_settings(settings)
    session = cluster.connect()
    migrate(session, name, replication_map("SimpleStrategy", 1, "dc"), load_migrations())
    env = {**os.environ, **{f"BRAID_{key.upper()}": str(value) for key, value in overrides.items()}}
    with open(work / f"{name}.log", "wb") as out:
        job = subprocess.Popen([sys.executable, "-m", "braid.cli", "speed", "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(20)  # let the job start its Spark session before the clock runs
        log(f"bench: {rate} events/s for {duration:.0f}s into {name}")
        config = GeneratorConfig(seed=rate, count=int(rate * duration), start=datetime.now(UTC), nominal_rate=float(rate),
                                 event_bytes=1000, duplicate_fraction=0.01, malformed_fraction=0.005)  # fmt: skip
        produced = run(config, RunOptions(rate=float(rate), bootstrap_servers=settings.kafka_bootstrap_servers, topic=name, manifest_dir=None))
        produced_at = time.time()
        target = produced.produced
        consumed = 0
        deadline = produced_at + max(120.0, duration)
        while time.time() < deadline:
            rows = list(session.execute(f"SELECT input_rows FROM {name}.speed_batches WHERE job = 'speed'"))
            consumed = sum(row.input_rows for row in rows)
            if consumed >= target:
                break
            time.sleep(2)
        drained_seconds = time.time() - produced_at
        batches = list(session.execute(f"SELECT * FROM {name}.speed_batches WHERE job = 'speed'"))
    finally:
        job.terminate()
        job.wait(timeout=120)
        cluster.shutdown()
    steady = [b for b in batches if b.batch_id > 0] or batches
    freshness = {
        name: _weighted_percentile([(getattr(b, f"freshness_{name}_ms"), b.input_rows) for b in steady], 0.5)
        for name in ("p50", "p95", "p99")
    }
    processed_seconds = duration + drained_seconds
    return {
        "rate_target": rate,
        "duration_seconds": duration,
        "produced": produced.produced,
        "producer_rate": round(produced.produced / produced.seconds, 1),
        "consumed": consumed,
        "batches": len(batches),
        "drain_seconds_after_producing": round(drained_seconds, 1),
        "kept_up": consumed >= target and drained_seconds < 30,
        "processed_rate": round(consumed / processed_seconds, 1),
        "batch_duration_ms_median": _weighted_percentile([(b.duration_ms, 1) for b in steady], 0.5),
        "freshness_ms": {
            "p50_of_batch_p50": freshness["p50"],
            "p95": _weighted_percentile([(b.freshness_p95_ms, b.input_rows) for b in steady], 0.95),
            "p99": _weighted_percentile([(b.freshness_p99_ms, b.input_rows) for b in steady], 0.99),
            "max": max((b.freshness_max_ms for b in steady if b.freshness_max_ms is not None), default=None),
        },
    }


def bench_speed(rates: list[int], duration: float, output: Path, log=print) -> dict[str, Any]:
    base = load_settings()
    work = base.home / "bench"
    work.mkdir(parents=True, exist_ok=True)
    results = [bench_rate(base, rate, duration, work, log) for rate in rates]
    report = {
        "benchmark": "speed layer: Kafka -> Spark -> Delta + Cassandra",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {name: version(name) for name in ("pyspark", "delta-spark", "kafka-python", "cassandra-driver")},
        "settings": {"trigger_seconds": base.speed_trigger_seconds, "max_offsets_per_trigger": base.speed_max_offsets_per_trigger,
                     "spark_master": base.spark_master, "topic_partitions": base.topic_partitions},  # fmt: skip
        "results": results,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return report
