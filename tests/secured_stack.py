"""A second local stack with every security option on, for the security tests only: Kafka with a SASL_PLAINTEXT
listener, Cassandra with password authentication and its admin, owner and reader roles, API tokens set.

It runs on its own ports (the test stack's shifted by 500) and in its own folder, so the shared test stack the rest of
the suite uses never has auth turned on. Started once per session (`braid up`'s code, then `braid migrate` as a
command), stopped at the end. Every secret is made up per run and holds characters that need quoting somewhere
(quotes, a backslash, non-ASCII), so the tests also prove each secret reaches its service intact.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from braid.kafka import KafkaSecurity
from braid.settings import Settings, load_settings

SHIFT = 500 + 100 * int(os.environ.get("BRAID_TEST_STACK", "0") or 0)
RUN = uuid.uuid4().hex[:10]
SECRETS = {
    "kafka_password": f'kafka-{RUN}-q"uo\\te-ö🙂',
    "cassandra_admin_password": f"admin-{RUN}-it's",
    "cassandra_password": f"owner-{RUN}-'x\"y",
    "cassandra_reader_password": f"reader-{RUN}-ü",
    "api_read_token": f"read-{RUN}-abcdefghijklmnop",
    "api_write_token": f"write-{RUN}-abcdefghijklmnop",
}


@dataclass
class SecuredStack:
    settings: Settings  # the owner's view: everything the speed and batch layers use
    env: dict[str, str]  # the same as BRAID_* variables, for `braid` subprocesses
    up_log: list[str] = field(default_factory=list)
    migrate_output: str = ""

    @property
    def security(self) -> KafkaSecurity:
        return KafkaSecurity.from_settings(self.settings)

    @property
    def secrets(self) -> list[str]:
        return list(SECRETS.values())

    def cli(self, *args: str, **changes: str) -> subprocess.CompletedProcess[str]:
        """`braid <args>` with the stack's settings, some changed (e.g. a wrong password): {"kafka_password": "x"}."""
        env = {**os.environ, **self.env, **{f"BRAID_{name.upper()}": value for name, value in changes.items()}}
        return subprocess.run([sys.executable, "-m", "braid.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def secured_overrides(braid_env: dict[str, str]) -> dict[str, object]:
    port = lambda name: int(braid_env[name].rsplit(":", 1)[-1]) + SHIFT  # noqa: E731
    return {
        "home": str(Path(braid_env["BRAID_HOME"]).parent / (Path(braid_env["BRAID_HOME"]).name + "-secured")),
        "kafka_bootstrap_servers": f"127.0.0.1:{port('BRAID_KAFKA_BOOTSTRAP_SERVERS')}",
        "kafka_controller_port": port("BRAID_KAFKA_CONTROLLER_PORT"),
        "cassandra_port": port("BRAID_CASSANDRA_PORT"),
        "cassandra_storage_port": port("BRAID_CASSANDRA_STORAGE_PORT"),
        "cassandra_keyspace": "braid_secured",
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_username": "braid",
        "cassandra_auth": True,
        "cassandra_username": "braid_owner",
        "cassandra_reader_username": "braid_reader",
        "topic_partitions": 2,
        **SECRETS,
    }


@pytest.fixture(scope="session")
def secured_stack(braid_env: dict[str, str]):
    from braid.services import local

    overrides = secured_overrides(braid_env)
    settings = load_settings(**overrides)
    env = {f"BRAID_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value) for name, value in overrides.items()}
    stack = SecuredStack(settings, env)
    local.down(settings, log=lambda message: None)  # whatever an aborted run left behind
    shutil.rmtree(settings.home, ignore_errors=True)
    local.up(settings, log=stack.up_log.append)
    try:
        migrated = stack.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr
        stack.migrate_output = migrated.stdout
        topics = stack.cli("topics", "create")
        assert topics.returncode == 0, topics.stderr
        yield stack
    finally:
        local.down(settings, log=lambda message: None)
