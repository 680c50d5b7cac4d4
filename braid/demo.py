"""`braid demo`: the whole platform on local defaults, narrated.

Services up (jars fetched the first time), topics and tables created, the API and dashboard serving, the speed layer
in the background, the generator streaming a realistic mix (late, re-sent and malformed events included), one run of
the batch DAG by Airflow in the middle, merged answers with their provenance, and at the end a check of every view's
merged answer against an independent aggregation of what the generator produced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from braid.errors import BraidError
from braid.settings import Settings


class _Stream(threading.Thread):
    """The generator producing at a steady rate in the background, keeping what it sent (the ground truth)."""

    def __init__(self, settings: Settings, rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        from braid.generator import EventGenerator, GeneratorConfig

        config = GeneratorConfig(
            seed=int(time.time()), count=int(rate * seconds), start=datetime.now(UTC), nominal_rate=rate,
            late_fraction=0.05, duplicate_fraction=0.02, malformed_fraction=0.01,
        )  # fmt: skip
        self.records = list(EventGenerator(config).records())
        self.settings, self.rate, self.sent, self.error = settings, rate, 0, None

    def run(self) -> None:
        from braid.producer import EventProducer
        from schemas.contracts import default_contracts

        from braid.kafka import KafkaSecurity

        security = KafkaSecurity.from_settings(self.settings).client_config()
        producer = EventProducer(self.settings.kafka_bootstrap_servers, self.settings.events_topic, registry=default_contracts(), validator=None, **security)
        began = time.monotonic()
        try:
            for index, record in enumerate(self.records):
                ahead = index / self.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
                producer.send_raw(record.key, record.value)
                self.sent = index + 1
            producer.flush()
        except Exception as error:  # reported by the demo, which then stops
            self.error = error
        finally:
            producer.close()


DEMO_KEYSPACE = "braid_demo"
REPORT_SECONDS = 15
CATCH_UP_SECONDS = 300  # for the speed layer to read the last records after the generator stops
DAG_RUN_TIMEOUT_SECONDS = 900  # one `airflow dags test braid_batch`: a few minutes on 2 cores; a hung run fails the demo


def demo_environment(settings: Settings) -> dict[str, str]:
    """The demo's own namespace: a topic per run, its keyspace, lake and checkpoints, apart from the `braid` data.
    Exported so that the background speed job and Airflow's tasks see the same settings."""
    root = Path(settings.home) / "demo"
    return {
        "BRAID_EVENTS_TOPIC": f"braid.demo.{datetime.now(UTC):%Y%m%d%H%M%S}",
        "BRAID_CASSANDRA_KEYSPACE": DEMO_KEYSPACE,
        "BRAID_DELTA_ROOT": str(root / "lake"),
        "BRAID_CHECKPOINT_ROOT": str(root / "checkpoints"),
    }


def _step(log: Callable[[str], None], text: str) -> float:
    log(f"demo: {text}")
    return time.monotonic()


class _Airflow:
    """`airflow` commands for the demo's one DAG run, each in its own session so that a run past its time is stopped
    with the spark-submits of its tasks. Its database is migrated in the background while the stream warms up (it
    needs nothing of the stream; a first migration took 4 s on an idle 2-core machine, more beside a busy speed job),
    and waited for just before the run."""

    def __init__(self, settings: Settings) -> None:
        self.home = Path(settings.home) / "airflow"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[1] / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        self.migrating = self._start("db", "migrate")

    def _start(self, *arguments: str) -> tuple[list[str], subprocess.Popen, Path]:
        command = [str(Path(sys.executable).parent / "airflow"), *arguments]
        self.home.mkdir(parents=True, exist_ok=True)
        output = self.home / f"demo-{'-'.join(arguments[:2])}.log"  # a file, not a pipe: no one reads it while it runs
        with open(output, "wb") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return command, process, output

    def _finish(self, started: tuple[list[str], subprocess.Popen, Path], timeout: float) -> None:
        command, process, output = started
        try:
            process.wait(timeout=timeout)
        except BaseException as stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if isinstance(stopped, subprocess.TimeoutExpired):
                raise BraidError(f"demo: airflow {' '.join(command[1:])} did not end in {timeout:.0f} s (output in {output})") from None
            raise
        if process.returncode != 0:
            last = output.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BraidError(f"demo: airflow {' '.join(command[1:])} failed (exit {process.returncode}): {last[0]} (output in {output})")

    def stop(self) -> None:
        """The migration, if the demo ends before the DAG run waited for it."""
        process = self.migrating[1]
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def run_dag(self, settings: Settings, log: Callable[[str], None]) -> None:
        self._finish(self.migrating, DAG_RUN_TIMEOUT_SECONDS)
        self._finish(self._start("dags", "test", "braid_batch"), DAG_RUN_TIMEOUT_SECONDS)
        from batch.job import batch_context

        with batch_context(settings, log=lambda m: None) as context:
            pointer = context.store.pointer()
            record = context.store.version(pointer.version) if pointer else None
        if record is not None:
            log(f"demo: Airflow ran braid_batch: version {record.version} published, cutoff bucket {record.cutoff}, "
                f"{record.events} events, {sum(record.view_rows.values())} view rows (logs under {self.home})")


def run_demo(settings: Settings, *, minutes: float = 2.0, rate: float = 500.0, keep: bool = False, log: Callable[[str], None] = print) -> bool:
    import uvicorn

    from braid.cassandra import cluster_from_settings, replication_map
    from braid.jvm import ensure_jars
    from braid.kafka import KafkaSecurity, create_topic
    from braid.migrations import load_migrations, migrate
    from braid.services import background, local
    from serving.main import create_serving_app, open_queries

    began = _step(log, "checking the JVM jars (resolved from Maven Central the first time, a few minutes; cached after)")
    ensure_jars(settings.jar_cache, log=lambda m: log(f"  {m}"))
    _step(log, "starting Kafka and Cassandra")
    started_services = not all(state.up for state in local.status(settings))  # stop at the end only what the demo started
    local.up(settings, log=lambda m: log(f"  {m}"))
    create_topic(
        settings.kafka_bootstrap_servers, settings.events_topic, partitions=settings.topic_partitions,
        replication=settings.topic_replication, security=KafkaSecurity.from_settings(settings),
    )  # fmt: skip
    import shutil

    shutil.rmtree(Path(settings.lake_root), ignore_errors=True)  # the demo starts from nothing each time
    shutil.rmtree(Path(settings.checkpoints), ignore_errors=True)
    cluster = cluster_from_settings(settings)
    if settings.cassandra_keyspace == DEMO_KEYSPACE:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {DEMO_KEYSPACE}")
    applied = migrate(
        cluster.connect(), settings.cassandra_keyspace,
        replication_map(settings.cassandra_replication_class, settings.cassandra_replication_factor, settings.cassandra_local_datacenter),
        load_migrations(),
    )  # fmt: skip
    cluster.shutdown()
    log(f"demo: topic {settings.events_topic} and keyspace {settings.cassandra_keyspace} ready ({len(applied)} migrations applied now)")
    background.start_speed(settings)
    try:
        log(f"demo: speed layer running in the background (log: {background.speed_spec(settings).log_file})")
        with open_queries(settings) as queries:
            server = uvicorn.Server(uvicorn.Config(create_serving_app(settings, queries), host=settings.serving_host, port=settings.serving_port, log_level="warning"))
            api = threading.Thread(target=server.run, daemon=True)
            api.start()
            try:
                log(f"demo: dashboard and API at http://{settings.serving_host}:{settings.serving_port}/")
                ok = _stream_batch_and_check(settings, queries, minutes, rate, log)
                log(f"demo: dashboard at http://{settings.serving_host}:{settings.serving_port}/ ; {time.monotonic() - began:.0f} s in all")
                if keep:
                    log("demo: --keep: everything stays up; Ctrl-C stops the API here, `braid down` stops the rest")
                    try:
                        api.join()
                    except KeyboardInterrupt:
                        pass
            finally:
                server.should_exit = True
                api.join(timeout=10)
    finally:
        # Also when the demo fails: a speed job left behind would hold the cores of whatever runs next.
        if not keep:
            background.stop_speed(settings)
            if started_services:
                local.down(settings, log=lambda m: log(f"  {m}"))
    return ok


def _stream_batch_and_check(settings: Settings, queries, minutes: float, rate: float, log: Callable[[str], None]) -> bool:
    """Stream, run the batch DAG half-way, wait for the speed layer to read everything, then check every view."""
    from schemas.views import default_views

    views = default_views()
    stream = _Stream(settings, rate, minutes * 60)
    window_start = datetime.now(UTC) - timedelta(hours=4)
    airflow = _Airflow(settings)
    try:
        stream.start()
        log(f"demo: the generator streams {len(stream.records):,} records at {rate:.0f}/s for {minutes:g} min (late, re-sent and malformed ones included)")
        return _stream_and_check(settings, queries, stream, airflow, views, window_start, log)
    finally:
        airflow.stop()


def _stream_and_check(settings: Settings, queries, stream: _Stream, airflow: _Airflow, views, window_start: datetime, log) -> bool:
    batch_done, reported = False, time.monotonic()
    while stream.is_alive():
        time.sleep(3)  # the DAG starts within seconds of the first complete bucket; the figures print every 15 s
        if time.monotonic() - reported >= REPORT_SECONDS:
            _report(queries, stream, log)
            reported = time.monotonic()
        if not batch_done and stream.sent >= len(stream.records) // 2 and _has_complete_data(queries):
            log("demo: half-way: Airflow runs the batch DAG once (snapshot gate, recompute, views gate, publish)")
            airflow.run_dag(settings, log)
            batch_done = True
    if not batch_done:
        log("demo: the speed layer has no complete bucket yet; Airflow runs the batch DAG now")
        airflow.run_dag(settings, log)
    if stream.error:
        raise BraidError(f"demo: producing failed: {stream.error}")
    _step(log, "all records produced; waiting for the speed layer to read them")
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while _consumed(queries) < len(stream.records) and time.monotonic() < deadline:
        time.sleep(3)
    _report(queries, stream, log)
    if _consumed(queries) < len(stream.records):
        log(f"demo: the speed layer read {_consumed(queries):,} of {len(stream.records):,} records in {CATCH_UP_SECONDS} s; the check covers what it read")
    end = datetime.now(UTC) + timedelta(minutes=10)
    for view in views.values():
        answer = queries.top(view.name, window_start, end, n=3, metric=view.metrics[0].name)
        shown = ", ".join(f"{'/'.join(e.key)} {e.value} ({e.source})" for e in answer.entries)
        log(f"demo: top {view.name} by {answer.metric}: {shown}")
    return _check(queries, stream, views, window_start, end, log)


def _has_complete_data(queries) -> bool:
    """The speed layer has committed events and marked their first bucket complete: a batch run will cover some."""
    progress = queries.store.progress()
    batches = queries.store.recent_speed_batches(10_000)
    return (
        progress is not None and progress.complete_through is not None and bool(batches)
        and progress.complete_through >= min(b.handoff_bucket for b in batches)
    )  # fmt: skip


def _consumed(queries) -> int:
    batches = queries.store.recent_speed_batches(10_000)
    return sum(b.input_rows or 0 for b in batches)


def _report(queries, stream: _Stream, log) -> None:
    batches = queries.store.recent_speed_batches(10_000)
    valid = sum(b.valid_rows or 0 for b in batches)
    quarantined: dict[str, int] = {}
    for batch in batches:
        for reason, count in (batch.quarantine_by_reason or {}).items():
            quarantined[reason] = quarantined.get(reason, 0) + count
    newest = batches[0] if batches else None
    freshness = f"freshness p50 {newest.freshness_p50_ms / 1000:.1f} s, p99 {newest.freshness_p99_ms / 1000:.1f} s" if newest and newest.freshness_p50_ms else "no micro-batch yet"
    reasons = ", ".join(f"{r} {c}" for r, c in sorted(quarantined.items())) or "none"
    log(f"demo: produced {stream.sent:,}; ingested {valid:,} valid; quarantined {sum(quarantined.values()):,} ({reasons}); speed {freshness}")


def _check(queries, stream: _Stream, views, start: datetime, end: datetime, log) -> bool:
    """Every view's merged top list against an aggregation of the generator's records in plain Python."""
    from collections import defaultdict

    from braid.layout import view_key_text

    distinct = {r.event["event_id"]: r.event for r in stream.records if r.event is not None}
    ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
           "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}  # fmt: skip
    mismatches, keys = [], 0
    for view in views.values():
        truth: dict[str, dict] = defaultdict(dict)
        for event in distinct.values():
            payload = event["payload"]
            if event["event_type"] not in view.sources or not all(ops[c.op](payload.get(c.field), c.value) for c in view.filter):
                continue
            key = view_key_text([str(payload[d]) for d in view.dimensions])  # spelt as stored: ties rank as served
            for metric in view.metrics:
                value = 1 if metric.aggregate == "count" else payload.get(metric.field)
                if value is None:
                    continue
                current = truth[key].get(metric.name)
                truth[key][metric.name] = value if current is None else current + value if metric.aggregate in ("count", "sum") else (min if metric.aggregate == "min" else max)(current, value)
        answer = queries.top(view.name, start, end, n=queries.max_top, metric=view.metrics[0].name)
        merged = {view_key_text(e.key): e.metrics for e in answer.entries}
        expected = dict(sorted(truth.items(), key=lambda item: (-item[1].get(view.metrics[0].name, 0), item[0]))[: queries.max_top])
        keys += len(expected)
        if merged != expected:
            mismatches.append(view.name)
    if mismatches:
        log(f"demo: CHECK FAILED: merged answers differ from the ground truth in {', '.join(mismatches)}")
        return False
    log(f"demo: check: the merged answers of all {len(views)} views ({keys} keys) equal an independent aggregation of the {len(distinct):,} distinct valid events produced")
    return True
