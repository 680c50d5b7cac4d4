"""`braid bench ingest`: the highest event rate the whole path sustains, and its end-to-end freshness.

The path is the production one: the generator's ~1 KB events through the producer library (acks=all, idempotent) into
Kafka, the speed layer (`braid speed run`, its own process) into Delta and Cassandra, and the serving API (`braid
serve`, its own process) answering a merged `top` query. Each trial runs in a fresh namespace (topic, keyspace, lake,
checkpoints) on the running local stack, and measures:

- throughput: what the producer achieved and what the speed layer consumed;
- lag: Kafka's end offsets minus the offsets of the newest committed micro-batch, sampled every 2 s. The rate is
  *sustained* when the producer achieved it, the lag of the last third of the run is no higher than that of the first
  third (plus one trigger's worth of events), and the backlog drains within a minute of the producer stopping;
- freshness, produced -> visible in a merged query: a prober asks the API's merged `series` query ten times a second which
  speed micro-batch its answer includes; each batch's produce-time percentiles (from the batch record) against the
  moment the API first answered with it. Percentiles are per batch, weighted by the batch's records;
- peak resident memory of each process: Kafka, Cassandra, the Spark driver JVM (local mode: it runs the executors
  too), the speed job's Python processes (driver and workers), the API.

The search doubles the rate from `start_rate` with short probes until one is not sustained, bisects once, confirms
the best rate over `sustain_seconds` (five minutes by default), and measures freshness at lower rates too.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from braid.settings import Settings, load_settings

TARGET_EVENTS_PER_SECOND = 83_000  # DESIGN.md, Performance: the fraud pipeline's worked example
TARGET_FRESHNESS_MS = 5_000
EVENT_BYTES = 1_000
PROBE_SECONDS = 0.1  # how often the prober asks the API: freshness is measured to within this


def weighted_percentile(pairs: list[tuple[float, float]], fraction: float) -> float | None:
    """The value below which `fraction` of the total weight lies; pairs of (value, weight)."""
    pairs = sorted(pair for pair in pairs if pair[0] is not None and pair[1] > 0)
    total = sum(weight for _, weight in pairs)
    if not total:
        return None
    running = 0.0
    for value, weight in pairs:
        running += weight
        if running >= fraction * total:
            return value
    return pairs[-1][0]


def steady_thirds(samples: list[tuple[float, int]], producing_until: float) -> tuple[list[int], list[int]] | None:
    """The lag sampled while producing, after a warm-up of 30 s (a quarter of the run if shorter), as its first and
    last thirds; None when fewer than 6 samples are left."""
    if not samples:
        return None
    start = samples[0][0] + min(30.0, (producing_until - samples[0][0]) / 4)
    steady = [lag for at, lag in samples if start <= at <= producing_until]
    if len(steady) < 6:
        return None
    third = len(steady) // 3
    return steady[:third], steady[-third:]


def lag_grew(samples: list[tuple[float, int]], producing_until: float, rate: float, trigger_seconds: float) -> bool:
    """Whether the lag sampled while producing (after a 30 s warm-up) rose from the first third to the last.

    A healthy job's lag is a saw-tooth (up to a batch's worth of events, then back down), so the thirds are compared by
    their maxima, with one trigger interval's worth of events as tolerance. Too few samples to tell counts as grown:
    a rate is only called sustained on evidence."""
    thirds = steady_thirds(samples, producing_until)
    if thirds is None:
        return True  # nothing measured proves nothing
    first, last = thirds
    return max(last) > max(first) + rate * trigger_seconds


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Sampler(threading.Thread):
    """Every `period` seconds, call each probe; keep the samples. Probes must not raise for long: errors are counted."""

    def __init__(self, probes: dict[str, Callable[[], float | None]], period: float) -> None:
        super().__init__(daemon=True)
        self.probes = probes
        self.period = period
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in probes}
        self.errors = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = time.time()
            for name, probe in self.probes.items():
                try:
                    value = probe()
                except Exception:
                    self.errors += 1
                    continue
                if value is not None:
                    self.samples[name].append((now, value))
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def _rss(pids: Callable[[], list[int]]) -> Callable[[], float | None]:
    def probe() -> float | None:
        total = 0
        for pid in pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20 if total else None

    return probe


def _tree(root: int, want: Callable[[psutil.Process], bool]) -> list[int]:
    try:
        parent = psutil.Process(root)
        family = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []
    found = []
    for process in family:
        try:
            if want(process):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def _is_java(process: psutil.Process) -> bool:
    return process.name() == "java"


def _is_python(process: psutil.Process) -> bool:
    return process.name().startswith("python")


class Trial:
    """One rate in its own namespace: speed job and API started, generator run, everything measured, then stopped."""

    def __init__(
        self,
        base: Settings,
        rate: int,
        seconds: float,
        work: Path,
        producers: int,
        log: Callable[[str], None],
        *,
        prefix: str = "bench",
        overrides: dict[str, str] | None = None,
    ):
        self.rate, self.seconds, self.producers, self.log = rate, seconds, producers, log
        self.name = f"{prefix}_{rate}_{uuid.uuid4().hex[:6]}"
        self.port = _free_port()
        self.overrides = {
            "events_topic": self.name.replace("_", "."),
            "cassandra_keyspace": self.name,
            "delta_root": str(work / self.name / "lake"),
            "checkpoint_root": str(work / self.name / "checkpoints"),
            "serving_port": str(self.port),
            **(overrides or {}),
        }
        self.settings = load_settings(**self.overrides)
        self.base = base
        self.work = work
        self.visible: dict[int, float] = {}  # speed batch id -> when the merged query first included it
        self._committed: dict[str, int] = {}  # Kafka partition -> newest offset a committed micro-batch read

    def env(self) -> dict[str, str]:
        """The environment of a `braid` subprocess working in this trial's namespace."""
        env = {name: value for name, value in os.environ.items() if name not in ("BRAID_API_READ_TOKEN", "BRAID_API_WRITE_TOKEN")}
        env.update({f"BRAID_{key.upper()}": value for key, value in self.overrides.items()})
        return env

    def _prepare(self) -> None:
        from braid.cassandra import cluster_from_settings, replication_map
        from braid.kafka import KafkaSecurity, create_topic
        from braid.migrations import load_migrations, migrate

        settings = self.settings
        create_topic(
            settings.kafka_bootstrap_servers, settings.events_topic, partitions=settings.topic_partitions, replication=1,
            security=KafkaSecurity.from_settings(settings),
        )  # fmt: skip
        cluster = cluster_from_settings(settings)
        try:
            replication = replication_map("SimpleStrategy", 1, settings.cassandra_local_datacenter)
            migrate(cluster.connect(), settings.cassandra_keyspace, replication, load_migrations())
        finally:
            cluster.shutdown()

    def probe_visible(self, http, start: str = "-10m") -> None:
        # The merged query's answer names the newest speed micro-batch it includes; every batch up to it is visible.
        # A one-key series: asked ten times a second, a `top` over every key would load the machine it measures.
        answer = http.get("/v1/views/page_views_by_country/series", params={"key": ["DE", "mobile"], "start": start})
        if answer.status_code != 200:
            return
        newest = answer.json()["freshness"]["speed_batch"]
        if newest is None:
            return
        now = time.time()
        for batch in range(newest, -1, -1):
            if batch in self.visible:
                break
            self.visible[batch] = now

    def start(self) -> None:
        """Prepare the namespace, start the speed job and the API, connect, and wait until both are ready."""
        import httpx
        from kafka import KafkaConsumer, TopicPartition

        from braid.cassandra import cluster_from_settings
        from braid.kafka import KafkaSecurity
        from braid.services import local

        self._prepare()
        settings = self.settings
        logs = self.work / self.name
        logs.mkdir(parents=True, exist_ok=True)
        self.launched_at = time.time()
        self.speed = subprocess.Popen([sys.executable, "-m", "braid.cli", "speed", "run"], env=self.env(),
                                      stdout=open(logs / "speed.log", "wb"), stderr=subprocess.STDOUT)  # fmt: skip
        self.api = subprocess.Popen([sys.executable, "-m", "braid.cli", "serve"], env=self.env(),
                                    stdout=open(logs / "api.log", "wb"), stderr=subprocess.STDOUT)  # fmt: skip
        self.cluster = cluster_from_settings(settings)
        self.session = self.cluster.connect(settings.cassandra_keyspace)
        self.security = KafkaSecurity.from_settings(settings)
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                      **self.security.client_config())  # fmt: skip
        self.partitions = [TopicPartition(settings.events_topic, p) for p in range(settings.topic_partitions)]
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self.service_pids = {state.name: state.pid for state in local.status(self.base)}
        self._batches_read = self.session.prepare("SELECT batch_id, max_offsets FROM speed_batches WHERE job = 'speed' LIMIT 1")
        try:
            self._wait_ready(self.session, self.http, self.speed, self.api)
            self.ready_at = time.time()
        except BaseException:
            self.stop()
            self.close()
            raise

    def speed_jvm_pids(self) -> list[int]:
        """The speed job's driver JVM (in local mode its executor too), found afresh: the job may restart it."""
        return _tree(self.speed.pid, _is_java)

    def memory_probes(self) -> dict[str, Callable[[], float | None]]:
        """Resident memory (MiB) of each process of the path: the services, the speed job's JVM and Python, the API."""
        pids, speed, api = self.service_pids, self.speed, self.api
        return {
            "kafka": _rss(lambda: [pids["kafka"]] if pids.get("kafka") else []),
            "cassandra": _rss(lambda: [pids["cassandra"]] if pids.get("cassandra") else []),
            "spark_driver_jvm": _rss(self.speed_jvm_pids),
            "speed_python": _rss(lambda: _tree(speed.pid, _is_python)),
            "api": _rss(lambda: [api.pid]),
        }

    def lag(self) -> float | None:
        """Kafka's end offsets minus the offsets of the newest committed micro-batch, in events."""
        newest = self.session.execute(self._batches_read).one()
        if newest is not None:
            for partition, offset in (newest.max_offsets or {}).items():
                self._committed[partition] = max(self._committed.get(partition, -1), offset)
        ends = self.consumer.end_offsets(self.partitions)
        return float(sum(max(0, end - self._committed.get(str(tp.partition), -1) - 1) for tp, end in ends.items()))

    def produce(self, seconds: float, seed: int):
        """The generator's ~1 KB events at this trial's rate for `seconds`, through the producer library."""
        from braid.generator import GeneratorConfig
        from braid.generator_run import RunOptions, run

        config = GeneratorConfig(seed=seed, count=int(self.rate * seconds), start=datetime.now(UTC),
                                 nominal_rate=float(self.rate), event_bytes=EVENT_BYTES,
                                 duplicate_fraction=0.01, malformed_fraction=0.005)  # fmt: skip
        options = RunOptions(rate=float(self.rate), bootstrap_servers=self.settings.kafka_bootstrap_servers,
                             topic=self.settings.events_topic, manifest_dir=None, kafka_security=self.security)  # fmt: skip
        return run(config, options, processes=self.producers, log=lambda message: None)

    def stop(self) -> None:
        """Stop the speed job and the API (gracefully, then killed after two minutes) and close the clients; the
        Cassandra session stays open for the final reads until `close`."""
        for process in (self.speed, self.api):
            process.terminate()
        for process in (self.speed, self.api):
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
        self.http.close()
        self.consumer.close()

    def close(self) -> None:
        self.cluster.shutdown()

    def run(self) -> dict[str, Any]:
        self.start()
        memory = Sampler(self.memory_probes(), period=1.0)
        lags = Sampler({"lag": self.lag}, period=2.0)
        prober = Sampler({"visible": lambda: self.probe_visible(self.http)}, period=PROBE_SECONDS)
        try:
            for sampler in (memory, lags, prober):
                sampler.start()
            self.log(f"bench: ingest at {self.rate:,} events/s for {self.seconds:.0f} s ({self.name})")
            self.producing_from = time.time()
            produced = self.produce(self.seconds, seed=self.rate)
            producing_until = time.time()
            drained_at = None
            while time.time() < producing_until + 120:
                if lags.samples["lag"] and lags.samples["lag"][-1][0] > producing_until and lags.samples["lag"][-1][1] == 0:
                    drained_at = lags.samples["lag"][-1][0]
                    break
                time.sleep(1)
            time.sleep(2)  # one more probe round, so the last batch's visibility is seen
        finally:
            for sampler in (prober, lags, memory):
                if sampler.is_alive():
                    sampler.stop()
            self.stop()
        try:
            batches = list(self.session.execute("SELECT * FROM speed_batches WHERE job = 'speed'"))
        finally:
            self.close()
        return self._result(produced, producing_until, drained_at, batches, lags, memory)

    def _wait_ready(self, session, http, speed, api, timeout: float = 180.0) -> None:
        """The speed job records progress once its query runs; the API answers /health."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for process, what in ((speed, "speed job"), (api, "API")):
                if process.poll() is not None:
                    raise RuntimeError(f"bench: the {what} exited with {process.returncode}; see {self.work / self.name}")
            try:
                ready = session.execute("SELECT job FROM pipeline_progress WHERE job = 'speed'").one() is not None
                ready = ready and http.get("/health").status_code == 200
            except Exception:
                ready = False
            if ready:
                return
            time.sleep(1)
        raise RuntimeError(f"bench: the speed job or the API was not ready within {timeout:.0f} s; see {self.work / self.name}")

    def _result(self, produced, producing_until, drained_at, batches, lags, memory) -> dict[str, Any]:
        trigger = self.settings.speed_trigger_seconds
        consumed = sum(batch.input_rows or 0 for batch in batches)
        producer_rate = produced.produced / produced.seconds if produced.seconds else 0.0
        samples = [(at, int(value)) for at, value in lags.samples["lag"]]
        steady = [batch for batch in batches if batch.batch_id > 0] or batches
        merged: dict[str, list[tuple[float, float]]] = {"p50": [], "p95": [], "p99": []}
        for batch in steady:
            seen = self.visible.get(batch.batch_id)
            if seen is None or batch.committed_at is None:
                continue
            # the batch record's freshness is measured at its commit; add the wait until the API answered with it
            extra_ms = (seen - batch.committed_at.replace(tzinfo=UTC).timestamp()) * 1000
            for name in merged:
                value = getattr(batch, f"freshness_{name}_ms")
                if value is not None:
                    merged[name].append((value + max(0.0, extra_ms), batch.input_rows or 0))
        quantile = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
        freshness = {name: _round(weighted_percentile(pairs, quantile[name])) for name, pairs in merged.items()}
        grew = lag_grew(samples, producing_until, self.rate, trigger)
        producer_ok = producer_rate >= 0.95 * self.rate
        drained = drained_at is not None and drained_at - producing_until <= 60 and consumed >= produced.produced
        durations = [batch.duration_ms for batch in steady if batch.duration_ms]
        return {
            "rate_target": self.rate,
            "seconds": self.seconds,
            "produced": produced.produced,
            "producer_rate": round(producer_rate, 1),
            "consumed": consumed,
            "batches": len(batches),
            "batch_seconds_median": round(statistics.median(durations) / 1000, 2) if durations else None,
            "events_per_batch_median": statistics.median([b.input_rows for b in steady]) if steady else None,
            "drain_seconds": round(drained_at - producing_until, 1) if drained_at else None,
            "lag_max_events": max((lag for _, lag in samples), default=None),
            "lag_grew": grew,
            "producer_kept_rate": producer_ok,
            "sustained": producer_ok and drained and not grew,
            "freshness_ms": freshness,
            "visible_batches": len(self.visible),
            # start-up: `braid speed run` launched -> its query running (progress recorded), then the first events
            # produced -> visible in a merged answer; together, how long a new job takes to show events
            "startup_seconds": {
                "ready": round(self.ready_at - self.launched_at, 1),
                "first_visible": round(min(self.visible.values()) - self.producing_from, 1) if self.visible else None,
            },
            "peak_memory_mib": {name: _round(max((v for _, v in series), default=None)) for name, series in memory.samples.items()},
            "lag_series": [(round(at - producing_until + self.seconds, 1), lag) for at, lag in samples],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def generator_alone(base: Settings, producers: int, work: Path, log: Callable[[str], None], count: int = 600_000) -> dict[str, Any]:
    """The load generator's own ceiling, so that a rate the path does not sustain is not the generator's limit: the
    same ~1 KB events and producer processes as a trial, as fast as they go, first generated only, then produced
    through the producer library to a fresh topic that nothing consumes."""
    from braid.generator import GeneratorConfig
    from braid.generator_run import RunOptions, run
    from braid.kafka import KafkaSecurity, create_topic

    probe = Trial(base, 0, 0, work, producers, log, prefix="generator")
    settings = probe.settings
    security = KafkaSecurity.from_settings(settings)
    create_topic(settings.kafka_bootstrap_servers, settings.events_topic, partitions=settings.topic_partitions, replication=1, security=security)
    config = GeneratorConfig(seed=1, count=count, start=datetime.now(UTC), nominal_rate=20_000.0, event_bytes=EVENT_BYTES,
                             duplicate_fraction=0.01, malformed_fraction=0.005)  # fmt: skip
    figures: dict[str, Any] = {"producer_processes": producers, "events": count}
    for name, servers in (("generate_only", None), ("to_kafka", settings.kafka_bootstrap_servers)):
        options = RunOptions(rate=None, bootstrap_servers=servers, topic=settings.events_topic, manifest_dir=None, kafka_security=security)
        summary = run(config, options, processes=producers, log=lambda message: None)
        figures[f"{name}_events_per_second"] = round(summary.produced / summary.seconds) if summary.seconds else None
    log(f"bench: the generator alone, {producers} processes: {figures['generate_only_events_per_second']:,} events/s generated, "
        f"{figures['to_kafka_events_per_second']:,} events/s produced to Kafka")  # fmt: skip
    return figures


def bench_ingest(
    base: Settings,
    *,
    start_rate: int,
    max_rate: int,
    probe_seconds: float,
    sustain_seconds: float,
    repeats: int,
    producers: int,
    output: Path,
    rates: list[int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    work = base.home / "bench" / "ingest"
    work.mkdir(parents=True, exist_ok=True)
    trials: list[dict[str, Any]] = []
    alone = generator_alone(base, producers, work, log)

    def trial(rate: int, seconds: float, phase: str) -> dict[str, Any]:
        result = Trial(base, rate, seconds, work, producers, log).run()
        result["phase"] = phase
        trials.append(result)
        log(
            f"bench: {rate:,}/s for {seconds:.0f} s: produced {result['producer_rate']:,}/s, "
            f"{'sustained' if result['sustained'] else 'NOT sustained'} (lag max {result['lag_max_events']}, "
            f"drain {result['drain_seconds']} s), freshness p50/p95/p99 {result['freshness_ms']['p50']}/"
            f"{result['freshness_ms']['p95']}/{result['freshness_ms']['p99']} ms"
        )
        _write(output, base, trials, None, probe_seconds, sustain_seconds, producers, alone)
        return result

    for rate in rates or []:  # freshness at named rates first, each on a fresh job
        trial(rate, probe_seconds, "freshness")
    best, failed, rate = None, None, start_rate
    while rate <= max_rate:  # double until a probe fails
        if trial(rate, probe_seconds, "search")["sustained"]:
            best, rate = rate, rate * 2
        else:
            failed = rate
            break
    if best is not None and failed is not None and failed - best > best // 4:
        middle = (best + failed) // 2
        if trial(middle, probe_seconds, "search")["sustained"]:
            best = middle
    sustained = None
    while best is not None and best >= start_rate // 4:  # hold it for the full duration; step down if it does not hold
        if trial(best, sustain_seconds, "sustain")["sustained"]:
            sustained = best
            break
        best = int(best * 0.75)
    if sustained is not None:
        for fraction in (0.25, 0.5):
            for _ in range(repeats):
                trial(max(100, int(sustained * fraction)), probe_seconds, "freshness")
        for _ in range(repeats - 1):
            trial(sustained, probe_seconds, "freshness")
    return _write(output, base, trials, sustained, probe_seconds, sustain_seconds, producers, alone)


def freshness_by_rate(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rate, the median over its sustained runs of each freshness percentile."""
    rates = sorted({trial["rate_target"] for trial in trials if trial["sustained"]})
    rows = []
    for rate in rates:
        runs = [trial for trial in trials if trial["rate_target"] == rate and trial["sustained"]]
        row = {"rate": rate, "runs": len(runs)}
        for name in ("p50", "p95", "p99"):
            values = [run["freshness_ms"][name] for run in runs if run["freshness_ms"][name] is not None]
            row[f"freshness_{name}_ms"] = round(statistics.median(values), 1) if values else None
        rows.append(row)
    return rows


def _write(output: Path, base: Settings, trials, sustained, probe_seconds, sustain_seconds, producers, alone=None) -> dict[str, Any]:
    from braid.bench_report import machine, versions

    held = [trial for trial in trials if trial["phase"] == "sustain" and trial["sustained"]]
    report = {
        "benchmark": "ingest to fresh view: generator -> producer -> Kafka -> speed layer -> Delta + Cassandra -> merged query",
        "machine": machine(),
        "versions": versions(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "event_bytes": EVENT_BYTES,
            "producer_processes": producers,
            "topic_partitions": base.topic_partitions,
            "spark_master": base.spark_master,
            "speed_trigger_seconds": base.speed_trigger_seconds,
            "probe_seconds": probe_seconds,
            "sustain_seconds": sustain_seconds,
        },
        "target": {"events_per_second": TARGET_EVENTS_PER_SECOND, "freshness_ms": TARGET_FRESHNESS_MS},
        "generator_alone": alone,
        "sustained_rate": sustained,
        "sustained_run": {key: value for key, value in held[-1].items() if key != "lag_series"} if held else None,
        "gap": round(TARGET_EVENTS_PER_SECOND / sustained, 1) if sustained else None,
        "freshness_by_rate": freshness_by_rate(trials),
        "trials": trials,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
