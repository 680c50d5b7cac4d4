"""JVM pins agree with the Python packages, and the jar cache holds exactly what Spark lacks."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from braid.jvm import _artifact_name, ensure_jars, jars_ready, module_jars, pinned_versions


def test_pins_match_the_python_packages() -> None:
    pins = pinned_versions()
    assert pins["spark.version"] == version("pyspark")
    assert pins["delta.version"] == version("delta-spark")
    assert pins["spark.binary.version"] == ".".join(version("pyspark").split(".")[:2])
    assert pins["kafka.version"].startswith("4.")
    assert pins["cassandra.version"].startswith("5.0.")


@pytest.mark.parametrize(
    ("jar", "artifact"),
    [
        ("scala-library-2.13.17.jar", "scala-library"),
        ("spark-sql-kafka-0-10_2.13-4.1.1.jar", "spark-sql-kafka-0-10_2.13"),
        ("delta-spark_4.1_2.13-4.4.0.jar", "delta-spark_4.1_2.13"),
        ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
        ("netty-all-4.1.130.Final.jar", "netty-all"),
    ],
)
def test_artifact_name_drops_the_version(jar: str, artifact: str) -> None:
    assert _artifact_name(jar) == artifact


@pytest.fixture(scope="module")
def jar_cache(settings) -> Path:
    return ensure_jars(settings.jar_cache, log=lambda message: None)


def test_spark_jars_are_delta_and_the_kafka_source_at_the_pinned_versions(jar_cache: Path) -> None:
    pins = pinned_versions()
    names = {jar.name for jar in module_jars(jar_cache, "spark")}
    assert f"delta-spark_{pins['spark.binary.version']}_2.13-{pins['delta.version']}.jar" in names
    assert f"delta-storage-{pins['delta.version']}.jar" in names
    assert f"spark-sql-kafka-0-10_2.13-{pins['spark.version']}.jar" in names
    assert any(name.startswith("kafka-clients-") for name in names)


def test_no_spark_jar_duplicates_one_pyspark_ships(jar_cache: Path) -> None:
    import pyspark

    shipped = {_artifact_name(jar.name) for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    ours = {_artifact_name(jar.name) for jar in module_jars(jar_cache, "spark")}
    assert ours and not ours & shipped


def test_service_jars_hold_the_pinned_broker_and_node(jar_cache: Path) -> None:
    pins = pinned_versions()
    assert (jar_cache / "kafka" / f"kafka_2.13-{pins['kafka.version']}.jar").is_file()
    assert (jar_cache / "cassandra" / f"cassandra-all-{pins['cassandra.version']}.jar").is_file()


def test_a_ready_cache_is_not_resolved_again(jar_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert jars_ready(jar_cache)
    monkeypatch.setenv("PATH", "/nonexistent")  # no mvn reachable: a second call must not need it
    before = {jar: jar.stat().st_mtime_ns for jar in jar_cache.rglob("*.jar")}
    assert ensure_jars(jar_cache, log=lambda message: None) == jar_cache
    assert {jar: jar.stat().st_mtime_ns for jar in jar_cache.rglob("*.jar")} == before


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from braid.errors import BraidError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BraidError, match=r"Maven \('mvn'\) is not on PATH"):
        ensure_jars(tmp_path / "empty-cache", log=lambda message: None)
