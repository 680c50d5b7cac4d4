"""`braid up` / `status` / `down` against the real JVM services."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from braid.errors import BraidError
from braid.services import local, process
from braid.settings import Settings, load_settings

pytestmark = pytest.mark.services


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "braid.cli", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300
    )


@pytest.fixture
def other_stack(tmp_path: Path, settings: Settings):
    """Settings of a second, separate stack (own folder, own ports) that the test may start and must not leak."""
    env = {
        "BRAID_HOME": str(tmp_path / "other"),
        "BRAID_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "BRAID_KAFKA_CONTROLLER_PORT": "29093",
        "BRAID_CASSANDRA_PORT": "29042",
        "BRAID_CASSANDRA_STORAGE_PORT": "27000",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    other = load_settings()
    yield other, env
    local.down(other, log=lambda message: None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_up_twice_keeps_the_same_processes(services: Settings) -> None:
    before = {state.name: state.pid for state in local.status(services)}
    after = {state.name: state.pid for state in local.up(services, log=lambda message: None)}
    assert before == after
    assert set(after) == {"kafka", "cassandra"} and all(after.values())


def test_status_shows_address_pid_state_and_data_folder(services: Settings) -> None:
    result = _cli("status")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    pids = {state.name: state.pid for state in local.status(services)}
    assert lines["kafka"][1:] == [services.kafka_bootstrap_servers[0], str(pids["kafka"]), "up", str(services.service_root / "kafka")]
    assert lines["cassandra"][1:] == [f"{services.cassandra_contact_points[0]}:{services.cassandra_port}", str(pids["cassandra"]), "up", str(services.service_root / "cassandra")]


def test_down_with_nothing_running_is_fine(other_stack) -> None:
    other, env = other_stack
    assert local.down(other, log=lambda message: None) == []
    result = _cli("down", env=env)
    assert result.returncode == 0
    assert "kafka: was not running" in result.stderr and "cassandra: was not running" in result.stderr
    statuses = {state.name: (state.pid, state.up) for state in local.status(other)}
    assert statuses == {"kafka": (None, False), "cassandra": (None, False)}


def test_a_stale_pid_file_is_not_trusted(other_stack) -> None:
    other, _ = other_stack
    kafka = local.local_specs(other)[0]
    kafka.data_dir.mkdir(parents=True)
    kafka.pid_file.write_text(str(os.getpid()))  # a live pid that is not a Kafka broker
    assert process.running_pid(kafka) is None
    assert local.down(other, log=lambda message: None) == []  # and above all, this test process was not signalled


def test_a_taken_port_is_a_clear_error(other_stack) -> None:
    _, env = other_stack
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 29092))
        squatter.listen()
        result = _cli("up", env=env)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message == (
        "braid: kafka: port 29092 on 127.0.0.1 is already in use by another process; "
        "stop it or change BRAID_KAFKA_BOOTSTRAP_SERVERS"
    )


def test_a_service_that_dies_on_start_fails_with_its_log_and_leaves_nothing_running(other_stack) -> None:
    _, env = other_stack
    result = _cli("up", env={**env, "BRAID_CASSANDRA_HEAP": "1m"})  # the JVM refuses a 1 MiB heap at once
    assert result.returncode == 2
    assert "braid: cassandra: the process exited while starting; last lines of" in result.stderr
    assert "heap" in result.stderr.lower()  # the tail of the JVM's own complaint
    status = _cli("status", env=env)
    assert [line.split()[3] for line in status.stdout.splitlines()[1:4]] == ["down", "down", "down"]  # kafka, cassandra, speed


def test_kafka_restarts_after_down_and_keeps_its_topics(services: Settings) -> None:
    from kafka import KafkaAdminClient

    from braid.kafka import create_topic

    create_topic(services.kafka_bootstrap_servers, "restart-survivor", partitions=2, replication=1)
    kafka = local.local_specs(services)[0]
    old_pid = process.running_pid(kafka)
    assert process.stop(kafka)
    assert process.running_pid(kafka) is None
    local.up(services, log=lambda message: None)
    assert process.running_pid(kafka) not in (None, old_pid)
    admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap_servers)
    try:
        assert "restart-survivor" in admin.list_topics()
    finally:
        admin.close()


def test_wait_ready_gives_up_with_the_reason(services: Settings) -> None:
    spec = local.local_specs(services)[0]

    def never_ready() -> None:
        raise ConnectionError("no answer on purpose")

    stalled = process.ServiceSpec(**{**spec.__dict__, "probe": never_ready})
    with pytest.raises(BraidError, match=r"kafka: not ready after 1s \(no answer on purpose\); last lines of"):
        process.wait_ready(stalled, timeout=1.0)


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    from braid.services.kafka import _cluster_id

    ids = [_cluster_id() for _ in range(2000)]  # with a 1-in-64 chance each, a leading '-' would show up here
    assert all(len(cluster_id) == 22 and not cluster_id.startswith("-") for cluster_id in ids)
    assert len(set(ids)) == len(ids)
