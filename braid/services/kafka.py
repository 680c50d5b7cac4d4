"""A single-node Apache Kafka in KRaft mode (one JVM that is both broker and controller), from the cached jars."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from braid.errors import BraidError
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


def server_properties(*, host: str, port: int, controller_port: int, log_dir: Path) -> str:
    # Replication factors of 1 for Kafka's internal topics: there is one broker. A cluster sets its own.
    return f"""\
process.roles=broker,controller
node.id={_NODE_ID}
controller.quorum.voters={_NODE_ID}@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
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
"""


def _cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding (what `random-uuid` prints). One in
    # 64 starts with '-', which the storage tool's argument parser takes for an option: draw again.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_spec(
    *, java: Path, jars: Path, root: Path, host: str, port: int, controller_port: int, heap: str, bootstrap: str
) -> ServiceSpec:
    root = root / "kafka"
    config = root / "server.properties"
    log4j = root / "log4j2.properties"
    log_dir = root / "data"
    classpath = f"{jars}/*"
    jvm = [str(java), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    jvm += [f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={root}", "-cp", classpath]

    def prepare() -> None:
        config.write_text(server_properties(host=host, port=port, controller_port=controller_port, log_dir=log_dir))
        log4j.write_text(_LOG4J2)
        if (log_dir / "meta.properties").exists():
            return
        format_command = jvm + ["kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)]
        result = subprocess.run(format_command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BraidError(f"kafka: formatting storage in {log_dir} failed: {(result.stdout + result.stderr).strip()[-500:]}")

    def probe() -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000)
        try:
            admin.describe_cluster()  # a metadata round trip: the broker answers and knows its controller
        finally:
            admin.close()

    return ServiceSpec(
        name="kafka",
        address=f"{host}:{port}",
        data_dir=root,
        marker=str(config),
        command=jvm + [MAIN_CLASS, str(config)],
        ports={"BRAID_KAFKA_BOOTSTRAP_SERVERS": (host, port), "BRAID_KAFKA_CONTROLLER_PORT": (host, controller_port)},
        prepare=prepare,
        probe=probe,
    )
