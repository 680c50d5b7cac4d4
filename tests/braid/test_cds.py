"""The class-data-sharing archive of Spark drivers (braid/jvm/cds.py): looked for under a name that changes with the
jars and the JDK, used only when whole and in place, and mapped by a driver started from the settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from braid.jvm import stamp_text
from braid.jvm.cds import archive_path, driver_java_options


def _ready_cache(path: Path, stamp: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / ".stamp").write_text(stamp or stamp_text())
    return path


def test_no_option_until_the_archive_is_in_place(tmp_path: Path) -> None:
    cache = _ready_cache(tmp_path / "jars")
    path = archive_path(cache)
    assert path is not None and path.parent == cache / "cds" and path.suffix == ".jsa"
    assert driver_java_options(cache) is None
    path.parent.mkdir()
    path.with_name(f"{path.name}.123.part").write_bytes(b"a dump still being written")  # never used: not renamed yet
    assert driver_java_options(cache) is None
    path.write_bytes(b"whole")
    assert driver_java_options(cache) == f"-XX:SharedArchiveFile={path}"
    assert driver_java_options(cache, enabled=False) is None  # BRAID_SPARK_CLASS_DATA_SHARING=false


def test_other_jars_look_for_another_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import braid.jvm

    ours = archive_path(_ready_cache(tmp_path / "ours"))
    assert ours is not None and ours.name == archive_path(_ready_cache(tmp_path / "copy")).name  # same jars and JDK: same name
    assert archive_path(tmp_path / "no-cache") is None  # no jars resolved: nothing to look for
    monkeypatch.setattr(braid.jvm, "stamp_text", lambda: "the stamp of another pom or pyspark")
    other = archive_path(_ready_cache(tmp_path / "other", stamp="the stamp of another pom or pyspark"))
    assert other is not None and other.name != ours.name
    assert archive_path(tmp_path / "ours") is None  # its jars are no longer the pinned ones


def test_spark_submit_starts_its_driver_with_the_archive(tmp_path: Path) -> None:
    from batch.submit import spark_submit_command
    from braid.settings import Settings

    cache = _ready_cache(tmp_path / "jars")
    (cache / "spark").mkdir()
    (cache / "spark" / "delta-spark_4.1_2.13-4.4.0.jar").write_bytes(b"")
    settings = Settings(jars_dir=cache, spark_driver_jvm_options="")  # not the test stack's options, whatever ran first
    assert "--driver-java-options" not in spark_submit_command(settings, ["stage", "publish"])
    path = archive_path(cache)
    path.parent.mkdir()
    path.write_bytes(b"whole")
    command = spark_submit_command(settings, ["stage", "publish"])
    assert command[command.index("--driver-java-options") + 1] == f"-XX:SharedArchiveFile={path}"
    assert command.index("--driver-java-options") < command.index("stage")  # an option of spark-submit, not of the stage
    disabled = spark_submit_command(settings.model_copy(update={"spark_class_data_sharing": False}), ["stage", "publish"])
    assert "--driver-java-options" not in disabled
    # BRAID_SPARK_DRIVER_JVM_OPTIONS: after the archive's option, and alone without an archive
    tuned = settings.model_copy(update={"spark_driver_jvm_options": " -XX:TieredStopAtLevel=1  -Xss2m "})
    command = spark_submit_command(tuned, ["stage", "publish"])
    assert command[command.index("--driver-java-options") + 1] == f"-XX:SharedArchiveFile={path} -XX:TieredStopAtLevel=1 -Xss2m"
    command = spark_submit_command(tuned.model_copy(update={"spark_class_data_sharing": False}), ["stage", "publish"])
    assert command[command.index("--driver-java-options") + 1] == "-XX:TieredStopAtLevel=1 -Xss2m"


# A driver started from the settings, as the speed job and `braid batch run` start theirs, in a process of its own (the
# suite's own driver may have been launched by whichever test came first). It prints the archives its JVM mapped.
_DRIVER = """
from braid.settings import load_settings
from braid.spark import session_from_settings

spark = session_from_settings(load_settings(), "braid-cds-check")
pid = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getPid()
print("MAPPED", *sorted({line.split()[-1] for line in open(f"/proc/{pid}/maps") if line.rstrip().endswith(".jsa")}))
spark.stop()
"""


@pytest.mark.spark
def test_a_driver_started_from_the_settings_maps_the_archive(spark, settings) -> None:
    path = archive_path(settings.jar_cache)
    assert path is not None and path.is_file(), "the spark fixture makes the archive (as `braid jars` does); its warning says why it could not"
    # class+path logging says why, should the JVM refuse the archive (it then starts without it, silently).
    env = {**os.environ, "JAVA_TOOL_OPTIONS": "-Xlog:cds=warning,class+path=info"}
    run = subprocess.run([sys.executable, "-c", _DRIVER], env=env, capture_output=True, text=True, timeout=300)
    mapped = [line for line in run.stdout.splitlines() if line.startswith("MAPPED")]
    assert run.returncode == 0 and mapped, run.stderr[-2000:]
    said = [line[:400] for line in (run.stdout + run.stderr).splitlines() if "[cds" in line or "[class,path" in line]
    assert str(path) in mapped[0].split(), f"{mapped[0]}; the JVM said: " + " | ".join(said[-12:])
