"""Delta Lake reads and writes of the speed layer: idempotent appends keyed by (application id, micro-batch id)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession


def master_path(lake_root: str, event_type: str) -> str:
    return f"{lake_root}/master/{event_type}"


def quarantine_path(lake_root: str) -> str:
    return f"{lake_root}/quarantine"


def append_once(frame: DataFrame, path: str, *, app_id: str, batch_id: int) -> None:
    """Append unless this (app_id, batch_id) already committed to the table: a replayed micro-batch adds nothing."""
    (
        frame.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .option("mergeSchema", "true")  # a new optional field in a new contract version extends the table
        .partitionBy("ingest_date")
        .save(path)
    )


def read_table(spark: SparkSession, path: str) -> DataFrame | None:
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return spark.read.format("delta").load(path)
