"""`braid bench serving`: latency of merged queries through the HTTP API against the local Cassandra node, at 1, 8 and
32 concurrent clients, on data the real pipeline wrote: a generated stream through the speed layer, a batch version
published at a cutoff in the middle, and speed rows after it (so every query merges both sides).

Needs `braid up`. The bench works in its own topic, keyspace and lake under `$BRAID_HOME/bench/serving`.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

NAME = "bench_serving"


def _seed(settings, events: int, log) -> None:
    from batch.job import batch_context, new_run_id, run_all
    from batch.stages import FULL
    from braid.cassandra import cluster_from_settings, replication_map
    from braid.generator import EventGenerator, GeneratorConfig
    from braid.kafka import KafkaSecurity, create_topic
    from braid.migrations import load_migrations, migrate
    from braid.producer import EventProducer
    from braid.spark import session_from_settings
    from schemas.contracts import default_contracts, rules
    from speed.main import run_speed

    security = KafkaSecurity.from_settings(settings)
    create_topic(settings.kafka_bootstrap_servers, settings.events_topic, partitions=settings.topic_partitions, replication=1, security=security)
    cluster = cluster_from_settings(settings)
    session = cluster.connect()
    session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}")
    migrate(session, settings.cassandra_keyspace, replication_map("SimpleStrategy", 1, settings.cassandra_local_datacenter), load_migrations())
    cluster.shutdown()
    records = list(EventGenerator(GeneratorConfig(seed=5, count=events, start=datetime.now(UTC), nominal_rate=events / 3600)).records())
    producer = EventProducer(settings.kafka_bootstrap_servers, settings.events_topic, registry=default_contracts(), validator=None, **security.client_config())
    quiet = {"log": lambda m: None, "max_restarts": 0, "handle_signals": False}
    half = len(records) // 2
    for record in records[:half]:
        producer.send_raw(record.key, record.value)
    producer.flush()
    run_speed(settings, once=True, **quiet)
    cluster = cluster_from_settings(settings)
    cutoff = cluster.connect(settings.cassandra_keyspace).execute("SELECT last_bucket FROM pipeline_progress WHERE job = 'speed'").one().last_bucket
    cluster.shutdown()
    with batch_context(settings, log=lambda m: None) as context:
        run_all(session_from_settings(settings, "braid-bench-serving"), context, new_run_id(), cutoff, FULL)
    seconds = rules(settings.rules_file).handoff_bucket_seconds
    while time.time() // seconds <= cutoff:  # the second half lands in later buckets: speed rows after the cutoff
        time.sleep(1)
    for record in records[half:]:
        producer.send_raw(record.key, record.value)
    producer.flush()
    run_speed(settings, once=True, **quiet)
    producer.close()
    log(f"bench: seeded {events:,} events (half in a batch version, half in speed rows)")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure(base: str, kind: str, count: int, seconds: float, keys: list, view: str) -> dict[str, Any]:
    """`count` clients sending `kind` queries back to back for `seconds`: throughput and latency percentiles."""
    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30) as http:
            while time.monotonic() < deadline:
                if kind == "series":
                    params = {"key": rng.choice(keys), "start": "-1h"}
                    path = f"/v1/views/{view}/series"
                else:
                    params = {"n": 10, "start": "-1h"}
                    path = f"/v1/views/{rng.choice(['page_views_by_url', 'payments_by_merchant'])}/top"
                began = time.perf_counter()
                response = http.get(path, params=params)
                elapsed = time.perf_counter() - began
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for each in threads:
        each.start()
    for each in threads:
        each.join()
    return {
        "requests": len(latencies),
        "per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
    }


def bench_serving(base_settings, clients: list[int], seconds: float, events: int, output: Path, log=print, repeats: int = 3) -> dict[str, Any]:
    import httpx
    import uvicorn

    from braid.bench_report import machine, versions

    from braid.settings import load_settings
    from serving.main import create_serving_app, open_queries

    root = Path(base_settings.home) / "bench" / "serving"
    shutil.rmtree(root, ignore_errors=True)
    settings = load_settings(
        events_topic=NAME.replace("_", "."), cassandra_keyspace=NAME, delta_root=str(root / "lake"), checkpoint_root=str(root / "checkpoints")
    )
    _seed(settings, events, log)
    results = []
    with open_queries(settings) as queries:
        app = create_serving_app(settings, queries)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.1)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        view = "page_views_by_url"
        start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        keys = [entry["key"] for entry in httpx.get(f"{base}/v1/views/{view}/top", params={"n": 200, "start": start}).json()["entries"]]
        for kind in ("series", "top"):
            for count in clients:
                runs = [_measure(base, kind, count, seconds, keys, view) for _ in range(repeats)]
                result = {  # the median of the runs, figure by figure
                    "query": kind,
                    "clients": count,
                    **{name: statistics.median(run[name] for run in runs) for name in ("per_second", "p50_ms", "p99_ms")},
                    "runs": runs,
                }
                log(f"bench: {kind} with {count} clients: {result['per_second']}/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
                results.append(result)
        server.should_exit = True
        thread.join(timeout=10)
    report = {
        "benchmark": "merged queries through the HTTP API (uvicorn, one process) against the local Cassandra node",
        "machine": machine(),
        "versions": versions(),
        "repeats": repeats,
        "data": {"events": events, "series": "one URL's 1-minute windows over the last hour", "top": "top 10 keys over the last hour"},
        "seconds_per_run": seconds,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": results,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return report
