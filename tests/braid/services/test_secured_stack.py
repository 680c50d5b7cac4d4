"""The local stack with its security options on (tests/secured_stack.py), against the real JVM services: Kafka's
SASL listener accepts each mechanism with the right credentials and refuses wrong ones with a clear error, `braid up`
sets the credentials again harmlessly, and no secret reaches a log, a command line or any other file under BRAID_HOME
but the broker's private properties file."""

from __future__ import annotations

import dataclasses
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from pydantic import SecretStr

from braid.kafka import CredentialsRefused, KafkaSecurity, admin_client, create_topic
from braid.producer import EventProducer
from braid.services import local, process
from schemas.contracts import default_contracts
from tests.secured_stack import SecuredStack

pytestmark = pytest.mark.services

WRONG = f"wrong-{uuid.uuid4().hex[:8]}-password"


def _round_trip(stack: SecuredStack, security: KafkaSecurity, count: int = 20) -> list[bytes]:
    topic = f"sasl-{security.mechanism.lower()}-{uuid.uuid4().hex[:6]}"
    create_topic(stack.settings.kafka_bootstrap_servers, topic, partitions=2, replication=1, security=security)
    sent = [f"record-{i}".encode() for i in range(count)]
    with EventProducer(stack.settings.kafka_bootstrap_servers, topic, registry=default_contracts(), validator=None, **security.client_config()) as producer:
        futures = [producer.send_raw(None, value) for value in sent]
        producer.flush(timeout=30)
        assert all(future.get(timeout=30) for future in futures)
    consumer = KafkaConsumer(
        topic, bootstrap_servers=stack.settings.kafka_bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False,
        consumer_timeout_ms=5000, **security.client_config(),
    )  # fmt: skip
    try:
        return sorted(record.value for record in consumer)
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_mechanism_produces_and_consumes_with_the_right_credentials(secured_stack: SecuredStack, mechanism: str) -> None:
    security = dataclasses.replace(secured_stack.security, mechanism=mechanism)
    assert _round_trip(secured_stack, security) == sorted(f"record-{i}".encode() for i in range(20))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_wrong_password_is_refused_clearly(secured_stack: SecuredStack, mechanism: str) -> None:
    security = dataclasses.replace(secured_stack.security, mechanism=mechanism, password=SecretStr(WRONG))
    server = secured_stack.settings.kafka_bootstrap_servers[0]
    with pytest.raises(CredentialsRefused) as refused:
        admin_client(secured_stack.settings.kafka_bootstrap_servers, security, request_timeout_ms=5000, bootstrap_timeout_ms=5000)
    assert str(refused.value) == (
        f"kafka: {server} answers but refused the {mechanism} sign-in of user 'braid'; check BRAID_KAFKA_USERNAME and "
        "BRAID_KAFKA_PASSWORD (and BRAID_KAFKA_SASL_MECHANISM)"
    )


def test_a_client_without_credentials_gets_nothing(secured_stack: SecuredStack) -> None:
    with pytest.raises(Exception) as refused:
        admin_client(secured_stack.settings.kafka_bootstrap_servers, KafkaSecurity(), request_timeout_ms=5000, bootstrap_timeout_ms=5000).list_topics()
    assert type(refused.value).__name__ in ("NoBrokersAvailable", "KafkaTimeoutError", "KafkaConnectionError")


def test_the_command_line_says_which_credentials_were_refused_in_one_line(secured_stack: SecuredStack) -> None:
    kafka = secured_stack.cli("topics", "create", kafka_password=WRONG)
    assert kafka.returncode == 2
    assert kafka.stderr == (
        f"braid: kafka: {secured_stack.settings.kafka_bootstrap_servers[0]} answers but refused the SCRAM-SHA-512 sign-in of user "
        "'braid'; check BRAID_KAFKA_USERNAME and BRAID_KAFKA_PASSWORD (and BRAID_KAFKA_SASL_MECHANISM)\n"
    )
    cassandra = secured_stack.cli("migrate", cassandra_password=WRONG)
    node = f"127.0.0.1:{secured_stack.settings.cassandra_port}"
    assert cassandra.returncode == 2 and len(cassandra.stderr.splitlines()) == 1
    assert cassandra.stderr.startswith(f"braid: cassandra: {node} refused the credentials (Provided username braid_owner and/or password are incorrect)")
    assert WRONG not in kafka.stderr + cassandra.stderr


def test_up_reported_what_it_secured_and_again_changes_nothing(secured_stack: SecuredStack) -> None:
    assert "kafka: SCRAM-SHA-256 and SCRAM-SHA-512 credentials of 'braid' set" in secured_stack.up_log
    assert "cassandra: role 'braid_admin' created; the default superuser 'cassandra' is disabled" in secured_stack.up_log
    assert {"cassandra: role 'braid_owner' created", "cassandra: role 'braid_reader' created"} <= set(secured_stack.up_log)
    again: list[str] = []
    local.up(secured_stack.settings, log=again.append)
    assert [line for line in again if "already running" in line] == [
        f"kafka: already running at {secured_stack.settings.kafka_bootstrap_servers[0]} (data in {secured_stack.settings.service_root / 'kafka'})",
        f"cassandra: already running at 127.0.0.1:{secured_stack.settings.cassandra_port} (data in {secured_stack.settings.service_root / 'cassandra'})",
    ]
    assert {"cassandra: role 'braid_owner' exists", "cassandra: role 'braid_reader' exists"} <= set(again)
    assert not [line for line in again if "braid_admin" in line]  # the admin signed in; nothing to create
    assert _round_trip(secured_stack, secured_stack.security, count=3) == [b"record-0", b"record-1", b"record-2"]


def test_no_secret_in_any_log_command_line_or_file_under_braid_home(secured_stack: SecuredStack) -> None:
    """After sign-ins that worked and ones refused on purpose: a refusal must not record what was offered either."""
    failed = [secured_stack.cli("topics", "create", kafka_password=WRONG), secured_stack.cli("query", "views", cassandra_reader_password=WRONG)]
    status = secured_stack.cli("status")
    secrets = [*secured_stack.secrets, WRONG]
    outputs = " ".join(result.stdout + result.stderr for result in [*failed, status])
    assert [secret for secret in secrets if secret in outputs] == []
    assert [secret for secret in secrets if secret in " ".join(secured_stack.up_log) + secured_stack.migrate_output] == []

    pids = [process.running_pid(spec) for spec in local.local_specs(secured_stack.settings)]
    assert all(pids)
    command_lines = b" ".join(Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids)
    command_lines += subprocess.run(["ps", "-eo", "args"], capture_output=True).stdout
    assert [secret for secret in secrets if secret.encode() in command_lines] == []

    properties = secured_stack.settings.service_root / "kafka" / "server.properties"
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600  # it must hold the broker's PLAIN password
    files = [path for path in secured_stack.settings.home.rglob("*") if path.is_file() and path != properties]
    logs = [path for path in files if path.suffix == ".log" and path.stat().st_size > 0]
    assert {path.name for path in logs} >= {"kafka.log", "cassandra.log"}
    found = {}
    for path in files:  # logs, configs, data files, commit logs: every byte
        content = path.read_bytes()
        found.update({(str(path), secret): True for secret in secrets if secret.encode() in content})
    assert list(found) == []
