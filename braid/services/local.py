"""The local stack: one Kafka broker and one Cassandra node as background processes, wired from settings."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from braid.cassandra import probe_query
from braid.jvm import ensure_jars, java_executable
from braid.kafka import SCRAM_MECHANISMS, KafkaSecurity, ensure_scram_credentials
from braid.services import process
from braid.services.cassandra import cassandra_spec
from braid.services.kafka import kafka_spec
from braid.services.process import ServiceSpec, ServiceState
from braid.settings import Settings

READY_TIMEOUT_SECONDS = 180.0


def local_specs(settings: Settings) -> list[ServiceSpec]:
    java = java_executable(settings.java_home)
    jars = settings.jar_cache
    kafka_host, kafka_port = settings.kafka_host_port
    # Readiness is a native-protocol round trip without credentials: with password authentication on, a node that
    # asks for them is up (the roles are set afterwards, by braid.cassandra_roles).
    probe = probe_query([settings.cassandra_host], settings.cassandra_port, settings.cassandra_local_datacenter, None, None)
    return [
        kafka_spec(
            java=java,
            jars=jars / "kafka",
            root=settings.service_root,
            host=kafka_host,
            port=kafka_port,
            controller_port=settings.kafka_controller_port,
            heap=settings.kafka_heap,
            bootstrap=settings.kafka_bootstrap_servers[0],
            security=KafkaSecurity.from_settings(settings),
        ),
        cassandra_spec(
            java=java,
            jars=jars / "cassandra",
            root=settings.service_root,
            host=settings.cassandra_host,
            native_port=settings.cassandra_port,
            storage_port=settings.cassandra_storage_port,
            heap=settings.cassandra_heap,
            probe_session=probe,
            password_auth=settings.cassandra_auth,
        ),
    ]


def up(settings: Settings, *, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[ServiceState]:
    """Start what is not running, then wait for every service to answer. Safe to call twice."""
    ensure_jars(settings.jar_cache, log=log)
    specs = local_specs(settings)
    started_at = time.monotonic()
    started = {}
    try:
        for spec in specs:  # launch both before waiting: they boot in parallel
            started[spec.name] = process.launch(spec)
            log(f"{spec.name}: {'starting' if started[spec.name] else 'already running'} at {spec.address} (data in {spec.data_dir})")
        for spec in specs:
            process.wait_ready(spec, READY_TIMEOUT_SECONDS)
            log(f"{spec.name}: ready ({time.monotonic() - started_at:.1f}s)")
        _secure(settings, log)
    except BaseException:
        for spec in specs:  # leave nothing half-started behind a failure
            if started.get(spec.name):
                process.stop(spec, timeout=20)
        raise
    return [process.state(spec) for spec in specs]


def _secure(settings: Settings, log: Callable[[str], None]) -> None:
    """The credentials the settings name, on services that run: Kafka's SCRAM credential, Cassandra's roles."""
    security = KafkaSecurity.from_settings(settings)
    if security.sasl:
        ensure_scram_credentials(settings.kafka_bootstrap_servers, security)
        log(f"kafka: {' and '.join(SCRAM_MECHANISMS)} credentials of {security.username!r} set")
    if settings.cassandra_auth:
        from braid.cassandra_roles import ensure_roles

        for line in ensure_roles(settings):
            log(f"cassandra: {line}")


def down(settings: Settings, *, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[str]:
    """Stop every local service that runs; fine when none does. Returns the names stopped."""
    stopped = []
    for spec in reversed(local_specs(settings)):
        if process.stop(spec):
            stopped.append(spec.name)
            log(f"{spec.name}: stopped")
        else:
            log(f"{spec.name}: was not running")
    return stopped


def status(settings: Settings) -> list[ServiceState]:
    return [process.state(spec) for spec in local_specs(settings)]
