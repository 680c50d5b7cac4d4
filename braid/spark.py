"""The Spark session factory: Delta Lake configured and Spark's Kafka source on the classpath, any master.

Jars come from Braid's jar cache (`braid jars`), never from a runtime Ivy download, so a session starts offline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from braid.jvm import module_jars
from braid.jvm.cds import driver_java_options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from braid.settings import Settings


def create_session(
    app_name: str,
    *,
    master: str,
    jars: list[Path],
    driver_memory: str,
    shuffle_partitions: int,
    ui_enabled: bool,
    extra_conf: dict[str, str] | None = None,
    driver_java_options: str | None = None,
) -> SparkSession:
    from pyspark.sql import SparkSession

    # Python workers must run the driver's interpreter (the project's venv), not whichever python3 is first on PATH:
    # the speed layer's validation runs there and imports Braid. A deployment can still point PYSPARK_PYTHON elsewhere.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.jars", ",".join(str(jar) for jar in jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        # Delta rebuilds table state with 50 tasks by default: far too many for small tables on few cores.
        .config("spark.databricks.delta.snapshotPartitions", str(shuffle_partitions))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", str(ui_enabled).lower())
        .config("spark.sql.session.timeZone", "UTC")  # event times are UTC everywhere in Braid
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
    )
    if driver_java_options:  # pyspark hands the session's conf to spark-submit, which starts the driver JVM with it
        builder = builder.config("spark.driver.extraJavaOptions", driver_java_options)
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def cluster_conf(settings: Settings) -> dict[str, str]:
    """What only a cluster reads: executor heap and the cores this application may hold (see Settings)."""
    conf = {}
    if settings.spark_executor_memory is not None:
        conf["spark.executor.memory"] = settings.spark_executor_memory
    if settings.spark_cores_max is not None:
        conf["spark.cores.max"] = str(settings.spark_cores_max)
    return conf


def object_store_conf(settings: Settings) -> dict[str, str]:
    """Hadoop S3A options for a lake on s3a://, credentials included; empty when no S3 setting is given."""
    conf = {}
    if settings.s3_endpoint is not None:
        conf["fs.s3a.endpoint"] = settings.s3_endpoint
        conf["fs.s3a.endpoint.region"] = settings.s3_region
        conf["fs.s3a.connection.ssl.enabled"] = str(settings.s3_endpoint.startswith("https://")).lower()
    if settings.s3_path_style_access:
        conf["fs.s3a.path.style.access"] = "true"
    if settings.s3_access_key is not None and settings.s3_secret_key is not None:
        conf["fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        conf["fs.s3a.access.key"] = settings.s3_access_key
        conf["fs.s3a.secret.key"] = settings.s3_secret_key.get_secret_value()
    return conf


def session_from_settings(settings: Settings, app_name: str, extra_conf: dict[str, str] | None = None) -> SparkSession:
    session = create_session(
        app_name,
        master=settings.spark_master,
        jars=module_jars(settings.jar_cache, "spark"),
        driver_memory=settings.spark_driver_memory,
        shuffle_partitions=settings.spark_shuffle_partitions,
        ui_enabled=settings.spark_ui_enabled,
        extra_conf={**cluster_conf(settings), **(extra_conf or {})},
        driver_java_options=driver_java_options(settings.jar_cache, settings.spark_class_data_sharing, settings.spark_driver_jvm_options),
    )
    # Set on the live Hadoop configuration rather than as spark.hadoop.* options: those reach the JVM as command-line
    # arguments, where any process listing would show the secret key. Spark ships this configuration with every task.
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    for key, value in object_store_conf(settings).items():
        hadoop.set(key, value)
    return session
