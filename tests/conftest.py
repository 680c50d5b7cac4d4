"""Session-wide fixtures: one real Kafka, one real Cassandra and one Spark session for the whole test run.

The test stack runs on its own ports and in its own folder (`~/.braid/test-stack`), so it never touches a developer's
`braid up` stack; only the jar cache is shared (it is immutable once resolved). The folder is fixed rather than
temporary so that services left behind by an aborted run are found by their pid files and stopped, not orphaned.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from braid.errors import BraidError
from braid.settings import Settings, load_settings

# Property tests (hypothesis): a modest number of examples, the same ones on every run (derandomized, no example
# database), so the suite stays fast and a failure reproduces. HYPOTHESIS_PROFILE=thorough tries many more.
hypothesis_settings.register_profile("braid", max_examples=60, stateful_step_count=25, derandomize=True, database=None, deadline=None, print_blob=True)
hypothesis_settings.register_profile("thorough", hypothesis_settings.get_profile("braid"), max_examples=2000, stateful_step_count=50)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "braid"))

# BRAID_TEST_STACK=N runs a second test stack beside the first (ports shifted by 100 N, its own folder), so two
# checkouts can run their suites on one machine at once. Under pytest-xdist (`make test TEST_WORKERS=2`) each worker
# has a stack of its own: worker gwK adds K. The secured stack sits 500 above (tests/secured_stack.py), so up to five.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
STACK = int(os.environ.get("BRAID_TEST_STACK", "0") or 0) + WORKER
TEST_PORTS = {
    "BRAID_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{19092 + 100 * STACK}",
    "BRAID_KAFKA_CONTROLLER_PORT": str(19093 + 100 * STACK),
    "BRAID_CASSANDRA_PORT": str(19042 + 100 * STACK),
    "BRAID_CASSANDRA_STORAGE_PORT": str(17000 + 100 * STACK),
}


# The handoff bucket of the test stack: 2 s instead of production's 60, so that a test that needs its events in a
# later bucket, or a bucket marked complete, waits seconds rather than up to a minute. Everything else is the packaged
# rules. tests/braid/test_demo.py runs the packaged 60 s rules end to end.
TEST_BUCKET_SECONDS = 2


def test_rules_text() -> str:
    from schemas.contracts import SCHEMAS_DIR

    packaged = (SCHEMAS_DIR / "rules.toml").read_text()
    assert "handoff_bucket_seconds = 60\n" in packaged
    return packaged.replace("handoff_bucket_seconds = 60\n", f"handoff_bucket_seconds = {TEST_BUCKET_SECONDS}\n")


@pytest.fixture(scope="session")
def braid_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the test stack; also exported so that `braid` subprocesses see the same settings."""
    rules_file = tmp_path_factory.mktemp("rules") / "rules.toml"
    rules_file.write_text(test_rules_text())
    home = Path.home() / ".braid" / ("test-stack" if not STACK else f"test-stack-{STACK}")
    jar_cache = os.environ.get("BRAID_JARS_DIR") or str(Path.home() / ".braid" / "jars")
    env = {
        **TEST_PORTS,
        "BRAID_HOME": str(home),
        "BRAID_JARS_DIR": jar_cache,
        "BRAID_SPARK_MASTER": "local[2]",
        "BRAID_SPARK_SHUFFLE_PARTITIONS": "2",
        "BRAID_SPARK_DRIVER_MEMORY": "2g",
        "BRAID_KAFKA_HEAP": "512m",
        "BRAID_CASSANDRA_HEAP": "1g",
        "BRAID_CASSANDRA_KEYSPACE": "braid_test",
        "BRAID_RULES_FILE": str(rules_file),
        "BRAID_BATCH_RETRY_DELAY_SECONDS": "1",  # a retried stage under Airflow starts at once, not 30 s later
        # The drivers the tests start as processes (speed jobs, the DAG's spark-submit stages) live seconds on two busy
        # cores: C1 alone compiles enough of them, and C2's compile threads would take the cores the services need.
        # The suite's own long-lived session keeps both tiers (the `spark` fixture).
        "BRAID_SPARK_DRIVER_JVM_OPTIONS": os.environ.get("BRAID_TEST_DRIVER_JVM_OPTIONS", "-XX:TieredStopAtLevel=1"),
    }
    for name in [name for name in os.environ if name.startswith("BRAID_")]:
        del os.environ[name]
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def settings(braid_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def services(settings: Settings):
    """Kafka and Cassandra up for the whole session, stopped gracefully at its end."""
    from braid.services import background, local

    def stop_everything() -> None:
        background.stop_speed(settings)  # a background speed job a failed test left would slow every later test
        local.down(settings, log=lambda message: None)

    stop_everything()  # whatever an aborted run left behind
    shutil.rmtree(settings.home, ignore_errors=True)  # each run starts from empty services, lake and checkpoints
    local.up(settings, log=lambda message: None)
    yield settings
    stop_everything()


@pytest.fixture(scope="session")
def spark(settings: Settings):
    from braid.jvm import ensure_jars
    from braid.jvm.cds import ensure_archive
    from braid.spark import session_from_settings

    ensure_jars(settings.jar_cache)
    try:
        ensure_archive(settings.jar_cache)  # made once by `make setup` (braid jars); every driver of the suite maps it
    except BraidError as error:  # the suite runs without it, slower; tests/braid/test_cds.py fails on its absence
        warnings.warn(str(error), stacklevel=1)
    session = session_from_settings(settings.model_copy(update={"spark_driver_jvm_options": ""}), "braid-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def cassandra_session(services: Settings):
    from braid.cassandra import cluster_from_settings, ensure_keyspace, replication_map

    cluster = cluster_from_settings(services)
    session = cluster.connect()
    ensure_keyspace(session, services.cassandra_keyspace, replication_map("SimpleStrategy", 1, "datacenter1"))
    session.set_keyspace(services.cassandra_keyspace)
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def published_lake(services, spark, tmp_path_factory):
    """A batch version at cutoff A plus the speed rows of B (tests/published_lake.py), built once: read by the serving
    and batch tests, forked by those that publish past it."""
    from tests.published_lake import build

    return build(services, spark, tmp_path_factory.mktemp("published-lake"))


# The longest modules, slowest first (measured by `make test`'s --durations): the workers take them before the short
# ones, so that both finish at about the same time instead of one starting a five-minute test at the end.
SLOWEST_FIRST = (
    "tests/faults/test_batch_killed_in_publish.py",
    "tests/batch/test_batch_job.py",
    "tests/faults/test_lake_unwritable.py",
    "tests/braid/test_demo.py",
    "tests/serving/test_serving.py",
    "tests/faults/test_kafka_broker_killed.py",
    "tests/faults/test_speed_killed.py",
    "tests/faults/test_cassandra_killed.py",
    "tests/braid/test_soak.py",
    "tests/braid/test_spark_standalone.py",
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Work units for `pytest -n N --dist loadgroup`: a module's tests stay on one worker (they share module fixtures
    and, in places, fixed ports), except a test that names a group of its own; every test of the secured stack goes to
    one worker, so that only one such stack is started. The slowest modules go first."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            secured = "secured_stack" in getattr(item, "fixturenames", ())
            item.add_marker(pytest.mark.xdist_group("secured-stack" if secured else item.nodeid.split("::")[0]))
    rank = {path: index for index, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


# The security tests' own stack (auth on, other ports, other folder): tests/secured_stack.py.
from tests.secured_stack import secured_stack  # noqa: E402,F401
