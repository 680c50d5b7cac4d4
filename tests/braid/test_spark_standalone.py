"""Braid on a Spark cluster by configuration alone: a standalone master and worker started from the pyspark installation
with the compose file's own commands, then the speed job (`braid speed run --once`) and the batch job (spark-submit, as
the Airflow DAG runs it) at `spark://`, each checked against the independent oracle of the speed and batch tests.
No local Spark session: the Delta tables the cluster wrote are read from their log and Parquet files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from batch.cassandra_io import PUBLISHED
from batch.job import batch_context
from braid.settings import load_settings
from braid.spark import cluster_conf, object_store_conf
from tests.published_lake import Lake
from tests.docker.compose_file import load_compose
from schemas.views import default_views
from tests.speed.oracle import expected_views, merged_speed_rows
from tests.speed.test_speed_job import Stream, _wait


def test_cluster_and_object_store_options_follow_the_settings() -> None:
    local = load_settings(spark_master="local[2]")
    assert cluster_conf(local) == {} and object_store_conf(local) == {}  # local defaults add nothing
    cluster = load_settings(
        spark_master="spark://m:7077", spark_executor_memory="3g", spark_cores_max=4, s3_endpoint="http://minio:9000",
        s3_path_style_access=True, s3_access_key="braid", s3_secret_key=SecretStr("k3y"),
    )  # fmt: skip
    assert cluster_conf(cluster) == {"spark.executor.memory": "3g", "spark.cores.max": "4"}
    assert object_store_conf(cluster) == {
        "fs.s3a.endpoint": "http://minio:9000",
        "fs.s3a.endpoint.region": "us-east-1",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.path.style.access": "true",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.access.key": "braid",
        "fs.s3a.secret.key": "k3y",
    }
    assert object_store_conf(load_settings(s3_endpoint="https://s3.example.org"))["fs.s3a.connection.ssl.enabled"] == "true"


@dataclass(frozen=True)
class Standalone:
    url: str
    ui: str
    work_dir: Path

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as response:
            return json.load(response)

    def finished_apps(self) -> dict[str, dict]:
        return {app["name"]: app for app in self.state().get("completedapps", [])}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _with(argv: list[str], options: dict[str, str], master: str | None = None) -> list[str]:
    """The compose command with this machine's values: each option replaced where present, added where absent."""
    argv = list(argv)
    for option, value in options.items():
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv[2:2] = [option, value]
    if master is not None:
        assert argv[-1].startswith("spark://"), argv
        argv[-1] = master
    return argv


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def standalone(settings, tmp_path_factory) -> Iterator[Standalone]:
    from pyspark.find_spark_home import _find_spark_home

    from braid.jvm import ensure_jars

    ensure_jars(settings.jar_cache)  # the jobs ship them to the executors (spark.jars)
    root = tmp_path_factory.mktemp("standalone")
    services = load_compose()["services"]
    spark_class = str(Path(_find_spark_home()) / "bin" / "spark-class")
    port, ui, worker_port, worker_ui = (_free_port() for _ in range(4))
    url = f"spark://127.0.0.1:{port}"
    master = _with(services["spark-master"]["command"], {"--host": "127.0.0.1", "--port": str(port), "--webui-port": str(ui)})
    worker = _with(
        services["spark-worker-1"]["command"],
        {"--host": "127.0.0.1", "--port": str(worker_port), "--webui-port": str(worker_ui), "--cores": "1", "--memory": "1g", "--work-dir": str(root / "work")},
        master=url,
    )  # fmt: skip
    env = {**os.environ, "SPARK_DAEMON_MEMORY": "256m", "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(root / "logs")}
    started = []
    try:
        for name, argv in (("master", master), ("worker", worker)):
            with open(root / f"{name}.log", "wb") as log:
                started.append(subprocess.Popen([spark_class, *argv[1:]], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        cluster = Standalone(url, f"http://127.0.0.1:{ui}", root / "work")

        def worker_alive() -> bool:
            for process, name in zip(started, ("master", "worker"), strict=True):
                assert process.poll() is None, f"the {name} exited:\n{(root / f'{name}.log').read_text()[-3000:]}"
            return any(w["state"] == "ALIVE" and w["cores"] == 1 for w in cluster.state()["workers"])

        _wait_or_raise(worker_alive, 90, "the worker to register with the master")
        yield cluster
    finally:
        for process in reversed(started):
            _stop(process)


def _wait_or_raise(condition, timeout: float, what: str) -> None:
    """As tests.speed's _wait, but an assertion inside the condition (a daemon died) fails at once with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, ValueError):  # not listening yet
            pass
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def delta_rows(table: Path, columns: list[str]) -> list[dict]:
    """The rows of an append-only Delta table read from its log and Parquet files, without Spark: a second reader, so
    that what the cluster wrote is not checked by the code that wrote it (and no local Spark session is started)."""
    import pyarrow.parquet as pq

    log = table / "_delta_log"
    assert not list(log.glob("*.checkpoint*.parquet")), "a checkpointed log: read it with Spark instead"
    files: set[str] = set()
    for commit in sorted(log.glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                assert not action["add"].get("deletionVector"), "deletion vectors: read it with Spark instead"
                files.add(action["add"]["path"])
            files.discard(action.get("remove", {}).get("path"))
    return [row for name in sorted(files) for row in pq.read_table(table / unquote(name), columns=columns).to_pylist()]


@pytest.mark.services
@pytest.mark.spark
def test_speed_and_batch_jobs_on_a_standalone_cluster(services, standalone: Standalone, tmp_path: Path, monkeypatch) -> None:
    from batch.submit import submit

    stream = Stream(services, tmp_path, seed=71, count=1500, max_offsets=5000)
    stream.produce(1500)
    cluster_env = {
        **stream.env,
        "BRAID_SPARK_MASTER": standalone.url,
        "BRAID_SPARK_EXECUTOR_MEMORY": "768m",  # within the worker's 1g, so the executor is granted
        "BRAID_SPARK_CORES_MAX": "1",
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    for name, value in cluster_env.items():
        monkeypatch.setenv(name, value)  # the speed job, the batch's spark-submit and its driver all read it

    log = tmp_path / "speed.log"
    with open(log, "wb") as out:
        # max_restarts is not a CLI option: a failing query would retry until the timeout, so the log tells why
        speed = subprocess.run([sys.executable, "-m", "braid.cli", "speed", "run", "--once"], stdout=out, stderr=subprocess.STDOUT, timeout=150)
    assert speed.returncode == 0, log.read_text()[-4000:]

    # The speed layer's oracle (tests/speed): the master dataset raw, quarantine = malformed records, views exact.
    produced = stream.records[: stream.sent]
    valid = [r.event for r in produced if r.event is not None]
    malformed = [r for r in produced if r.event is None]
    lake = Path(stream.settings.lake_root)
    master = [row["event_id"] for t in ("payment", "page_view") for row in delta_rows(lake / "master" / t, ["event_id"])]
    assert Counter(master) == Counter(event["event_id"] for event in valid)
    quarantine = delta_rows(lake / "quarantine", ["raw", "reason"])
    assert sorted((row["raw"], row["reason"]) for row in quarantine) == sorted((r.value, r.expected_reason) for r in malformed)
    distinct = list({event["event_id"]: event for event in valid}.values())
    assert merged_speed_rows(stream.speed_rows(), default_views()) == expected_views(distinct, default_views())

    # The batch layer as the Airflow DAG runs it: spark-submit of batch/main.py, every stage, at the cluster.
    cutoff = stream.progress().last_bucket
    with open(tmp_path / "batch.log", "w") as out:
        submit(load_settings(), ["run", "--cutoff", str(cutoff)], log=lambda line: print(line, file=out, flush=True))
    served = Lake(stream, cutoff, cutoff, stream.sent)
    version, served_cutoff, rows = served.served()
    assert served_cutoff == cutoff and rows == served.expected(stream.sent)  # every valid event, each counted once
    assert rows, "an empty version would match an empty oracle"
    with batch_context(stream.settings, log=lambda m: None) as context:
        assert context.store.version(version).state == PUBLISHED

    # Both ran on the cluster, not in a local Spark: the master lists them finished, each with the one core and the
    # executor memory it was allowed, and the worker ran an executor for each.
    _wait(lambda: {"braid-speed", "braid-batch-run"} <= set(standalone.finished_apps()), 30, "the master to list both applications")
    apps = standalone.finished_apps()
    assert [(apps[name]["cores"], apps[name]["memoryperexecutor"]) for name in ("braid-speed", "braid-batch-run")] == [(1, 768)] * 2
    assert len(list(standalone.work_dir.glob("app-*/*/stderr"))) == 2
