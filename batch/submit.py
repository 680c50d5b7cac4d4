"""spark-submit of a batch stage, aimed at the Spark master the settings name: how the Airflow DAG runs Spark work.

The command is pyspark's own `spark-submit` (the installed Spark), the pinned jars from Braid's jar cache, and
`batch/main.py`; a cluster is a different `BRAID_SPARK_MASTER`, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from braid.errors import BraidError
from braid.jvm import module_jars
from braid.jvm.cds import driver_java_options
from braid.settings import Settings

QUALITY_GATE_EXIT = 3


class QualityGateRefused(BraidError):
    """The submitted stage's quality gate refused the version."""


def spark_submit_command(settings: Settings, arguments: list[str]) -> list[str]:
    from pyspark.find_spark_home import _find_spark_home

    import batch.main

    options = driver_java_options(settings.jar_cache, settings.spark_class_data_sharing, settings.spark_driver_jvm_options)
    return [
        str(Path(_find_spark_home()) / "bin" / "spark-submit"),
        "--master", settings.spark_master,
        "--driver-memory", settings.spark_driver_memory,
        "--jars", ",".join(str(jar) for jar in module_jars(settings.jar_cache, "spark")),
        "--conf", f"spark.sql.shuffle.partitions={settings.spark_shuffle_partitions}",
        "--conf", "spark.ui.showConsoleProgress=false",
        *(["--driver-java-options", options] if options else []),
        batch.main.__file__,
        *arguments,
    ]  # fmt: skip


def submit(settings: Settings, arguments: list[str], log: Callable[[str], None] = print) -> None:
    """Run one spark-submit to its end, its output line by line to `log`; a failure raises with its last lines."""
    env = {**os.environ, "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}
    command = spark_submit_command(settings, arguments)
    log(f"spark-submit: {' '.join(arguments)} on {settings.spark_master}")
    tail: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log(line.rstrip())
            tail = (tail + [line.rstrip()])[-20:]
    if process.returncode == QUALITY_GATE_EXIT:
        raise QualityGateRefused(next((line for line in reversed(tail) if line.startswith("braid:")), "the quality gate failed"))
    if process.returncode != 0:
        raise BraidError(f"spark-submit {' '.join(arguments)} exited with {process.returncode}: {' | '.join(tail[-5:])}")
