"""A single-node Apache Cassandra 5.0, run from `cassandra-all` (CassandraDaemon) with the cached jars."""

from __future__ import annotations

from pathlib import Path

from braid.errors import BraidError
from braid.jvm import java_major_version
from braid.services.process import ServiceSpec

MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"

# From Cassandra 5.0's conf/jvm17-server.options: the JDK internals it reaches into on Java 17.
_JDK17_OPTIONS = """
-XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
-XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
-Djdk.attach.allowAttachSelf=true
--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports java.sql/java.sql=ALL-UNNAMED
--add-exports java.base/java.lang.ref=ALL-UNNAMED
--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens java.base/java.lang.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens java.base/jdk.internal.math=ALL-UNNAMED
--add-opens java.base/jdk.internal.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens java.base/sun.nio.ch=ALL-UNNAMED
--add-opens java.base/java.io=ALL-UNNAMED
--add-opens java.base/java.lang.reflect=ALL-UNNAMED
--add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
--add-opens java.base/java.lang=ALL-UNNAMED
--add-opens java.base/java.util=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
""".split()

_LOGBACK = """\
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def cassandra_yaml(*, host: str, native_port: int, storage_port: int, storage: Path, password_auth: bool) -> str:
    # Only keys Cassandra 5.0 knows (it refuses unknown ones); everything else keeps the 5.0 defaults.
    authenticator = "PasswordAuthenticator" if password_auth else "AllowAllAuthenticator"
    authorizer = "CassandraAuthorizer" if password_auth else "AllowAllAuthorizer"
    return f"""\
cluster_name: 'Braid local'
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: {authenticator}
authorizer: {authorizer}
role_manager: CassandraRoleManager
data_file_directories: ['{storage}/data']
commitlog_directory: '{storage}/commitlog'
saved_caches_directory: '{storage}/saved_caches'
hints_directory: '{storage}/hints'
cdc_raw_directory: '{storage}/cdc_raw'
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{host}:{storage_port}"
listen_address: {host}
rpc_address: {host}
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
endpoint_snitch: SimpleSnitch
disk_failure_policy: stop
commit_failure_policy: stop
concurrent_reads: 16
concurrent_writes: 32
"""


def cassandra_spec(
    *,
    java: Path,
    jars: Path,
    root: Path,
    host: str,
    native_port: int,
    storage_port: int,
    heap: str,
    probe_session,
    password_auth: bool = False,
) -> ServiceSpec:
    root = root / "cassandra"
    config = root / "cassandra.yaml"
    logback = root / "logback.xml"
    storage = root / "data"
    jamm = sorted(jars.glob("jamm-*.jar"))
    command = [str(java), f"-Xms{heap}", f"-Xmx{heap}", "-Xss256k", *_JDK17_OPTIONS]
    if jamm:
        command.append(f"-javaagent:{jamm[0]}")  # Cassandra measures object sizes with jamm
    command += [
        f"-Dcassandra.config=file://{config}",
        f"-Dcassandra.storagedir={storage}",
        f"-Dcassandra.logdir={root}",
        f"-Dlogback.configurationFile={logback}",
        "-Dcassandra-foreground=yes",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.superuser_setup_delay_ms=0",
        "-cp",
        f"{jars}/*",
        MAIN_CLASS,
    ]

    def prepare() -> None:
        major = java_major_version(java)
        if major != 17:
            raise BraidError(f"cassandra: Cassandra 5.0 runs on JDK 17, but {java} is JDK {major}; set BRAID_JAVA_HOME")
        config.write_text(
            cassandra_yaml(host=host, native_port=native_port, storage_port=storage_port, storage=storage, password_auth=password_auth)
        )
        logback.write_text(_LOGBACK)

    def probe() -> None:
        probe_session("SELECT release_version FROM system.local")

    return ServiceSpec(
        name="cassandra",
        address=f"{host}:{native_port}",
        data_dir=root,
        marker=str(config),
        command=command,
        ports={"BRAID_CASSANDRA_PORT": (host, native_port), "BRAID_CASSANDRA_STORAGE_PORT": (host, storage_port)},
        prepare=prepare,
        probe=probe,
    )
