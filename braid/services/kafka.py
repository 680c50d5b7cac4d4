"""A single-node Apache Kafka in KRaft mode (one JVM that is both broker and controller), from the cached jars."""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
import uuid
from pathlib import Path

from braid.errors import BraidError
from braid.kafka import PLAIN_LOGIN_MODULE, SCRAM_LOGIN_MODULE, KafkaSecurity, jaas_config
from braid.services.process import ServiceSpec

MAIN_CLASS = "kafka.Kafka"
_NODE_ID = 1

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def server_properties(*, host: str, port: int, controller_port: int, log_dir: Path, security: KafkaSecurity = KafkaSecurity()) -> str:
    # Replication factors of 1 for Kafka's internal topics: there is one broker. A cluster sets its own.
    listener = "SASL_PLAINTEXT" if security.sasl else "PLAINTEXT"
    return f"""\
process.roles=broker,controller
node.id={_NODE_ID}
controller.quorum.voters={_NODE_ID}@{host}:{controller_port}
listeners={listener}://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners={listener}://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name={listener}
listener.security.protocol.map={listener}:{listener},CONTROLLER:{listener}
log.dirs={log_dir}
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
""" + (_sasl_properties(security) if security.sasl else "")


def _sasl_properties(security: KafkaSecurity) -> str:
    """SASL on both listeners, for the one user of the settings. The broker itself (to its controller and as an
    inter-broker client) signs in with PLAIN, whose users live in these properties; clients may use PLAIN or SCRAM,
    whose credentials live in the cluster metadata and are set once the broker runs (braid.kafka.ensure_scram_credentials).
    The controller listener takes PLAIN only: KRaft controllers cannot check SCRAM credentials."""
    assert security.username is not None and security.password is not None
    user, password = security.username, security.password.get_secret_value()
    plain = jaas_config(PLAIN_LOGIN_MODULE, username=user, password=password, **{f"user_{user}": password})
    scram = f"{SCRAM_LOGIN_MODULE} required;"
    lines = {
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain,
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain,
    }
    return "".join(f"{key}={properties_value(value)}\n" for key, value in lines.items())


def properties_value(text: str) -> str:
    """`text` as a value of a Java .properties file (read as ISO-8859-1): backslashes doubled, anything outside
    printable ASCII as \\uXXXX (UTF-16, so characters beyond the BMP become surrogate pairs)."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif " " <= char <= "~":
            out.append(char)
        else:
            encoded = char.encode("utf-16-be")
            out += [f"\\u{int.from_bytes(encoded[i:i + 2], 'big'):04x}" for i in range(0, len(encoded), 2)]
    return "".join(out)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read: the broker's properties hold the SASL password."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding (what `random-uuid` prints). One in
    # 64 starts with '-', which the storage tool's argument parser takes for an option: draw again.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_spec(
    *,
    java: Path,
    jars: Path,
    root: Path,
    host: str,
    port: int,
    controller_port: int,
    heap: str,
    bootstrap: str,
    security: KafkaSecurity = KafkaSecurity(),
) -> ServiceSpec:
    root = root / "kafka"
    config = root / "server.properties"
    log4j = root / "log4j2.properties"
    log_dir = root / "data"
    classpath = f"{jars}/*"
    jvm = [str(java), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    jvm += [f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={root}", "-cp", classpath]

    def prepare() -> None:
        _write_private(config, server_properties(host=host, port=port, controller_port=controller_port, log_dir=log_dir, security=security))
        log4j.write_text(_LOG4J2)
        if (log_dir / "meta.properties").exists():
            return
        format_command = jvm + ["kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)]
        result = subprocess.run(format_command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BraidError(f"kafka: formatting storage in {log_dir} failed: {(result.stdout + result.stderr).strip()[-500:]}")

    def probe() -> None:
        from braid.kafka import admin_client

        # PLAIN: the broker knows those credentials from its properties; SCRAM ones are set only once it is ready.
        probe_security = dataclasses.replace(security, mechanism="PLAIN") if security.sasl else security
        admin = admin_client(bootstrap, probe_security, request_timeout_ms=3000, bootstrap_timeout_ms=3000)
        try:
            admin.describe_cluster()  # a metadata round trip: the broker answers and knows its controller
        finally:
            admin.close()

    return ServiceSpec(
        name="kafka",
        address=f"{host}:{port}",
        data_dir=root,
        marker=str(config),
        # The broker's heap touched once at start, as Cassandra's own jvm options do: its memory is then what it will
        # stay at, not a figure that creeps up for an hour as the collector first uses each region.
        command=[*jvm[:1], "-XX:+AlwaysPreTouch", *jvm[1:], MAIN_CLASS, str(config)],
        ports={"BRAID_KAFKA_BOOTSTRAP_SERVERS": (host, port), "BRAID_KAFKA_CONTROLLER_PORT": (host, controller_port)},
        prepare=prepare,
        probe=probe,
    )
