"""`braid bench batch`: the batch layer's recompute throughput over a large master dataset, side by side with DuckDB
computing the same views over the same Delta snapshot (the single-machine alternative a user would pick).

The master dataset is synthesised by Spark straight into Delta, typed by the contracts (values drawn within each
field's enum, bounds and pattern), with re-sent duplicates arriving later, so that the run measures the real work:
read the snapshot, keep the first copy of each event, aggregate every declared view, write the view tables. DuckDB
reads the snapshot's Parquet files (the files of the pinned Delta version) and runs one SQL query per view, compiled
here from the same declarations; the two answers are compared, so the ratio is between equal results.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.contracts import Contract, default_contracts, rules
from schemas.views import View, default_views

BASE_EPOCH = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())


# -- the synthetic master dataset ----------------------------------------------------------------------------------


def _value(spec, seed) -> Any:
    """A Spark column of valid values for one payload field, from the contract alone."""
    from pyspark.sql import functions as F

    draw = F.pmod(F.xxhash64(seed, F.lit(spec.name)), F.lit(1 << 30))
    if spec.type == "map":
        return F.lit(None).cast("map<string,string>")
    if spec.enum is not None:
        return F.element_at(F.array(*[F.lit(v) for v in spec.enum]), (F.pmod(draw, F.lit(len(spec.enum))) + 1).cast("int"))
    if spec.type == "string":
        if spec.pattern == "^[A-Z]{2}$":
            return F.element_at(F.array(*[F.lit(c) for c in ("US", "DE", "FR", "GB", "BR", "IN", "JP", "NL")]), (F.pmod(draw, F.lit(8)) + 1).cast("int"))
        cardinality = {"merchant_id": 200, "user_id": 50_000, "url": 1_000}.get(spec.name, 1 << 30)
        return F.concat(F.lit(f"{spec.name[:3]}-"), F.pmod(draw, F.lit(cardinality)).cast("string"))
    if spec.type == "integer":
        low, high = int(spec.minimum or 0), int(min(spec.maximum or 1_000_000, 1_000_000))
        return (F.lit(low) + F.pmod(draw, F.lit(high - low + 1))).cast("bigint")
    if spec.type == "number":
        return (F.pmod(draw, F.lit(100_000)) / 100.0).cast("double")
    return F.pmod(draw, F.lit(2)) == 1


def synthesize_master(
    spark, lake_root: str, events: int, bucket_seconds: int, duplicate_fraction: float = 0.02, rate: float = 5_000.0
) -> dict[str, int]:
    """Write `events` distinct events (plus re-sent copies) into `<lake_root>/master/<type>`; returns rows per type."""
    from pyspark.sql import functions as F

    from schemas.spark_types import master_schema

    registry = default_contracts()
    types = sorted(registry)
    rows = {}
    for index, event_type in enumerate(types):
        versions = registry[event_type]
        newest = versions[max(versions)]
        schema = master_schema(versions)
        ids = spark.range(events).where(F.pmod(F.col("id"), F.lit(len(types))) == index)
        copies = ids.withColumn("copy", F.lit(0)).unionByName(
            ids.where(F.pmod(F.xxhash64("id"), F.lit(10_000)) < duplicate_fraction * 10_000).withColumn("copy", F.lit(1))
        )
        event_seconds = F.lit(BASE_EPOCH) + (F.col("id") / rate).cast("bigint")
        late = F.when(F.pmod(F.xxhash64("id", F.lit("late")), F.lit(20)) == 0, F.lit(1800)).otherwise(F.lit(2))
        ingested_ms = (event_seconds + late + F.col("copy") * 90) * 1000 + F.pmod(F.col("id"), F.lit(1000))
        payload = F.struct(*[_value(spec, F.col("id")).alias(spec.name) for spec in _fields(versions, schema)])
        frame = copies.select(
            F.concat(F.lit(f"{event_type}-"), F.col("id").cast("string")).alias("event_id"),
            F.lit(event_type).alias("event_type"),
            F.lit(newest.version).alias("schema_version"),
            F.timestamp_seconds(event_seconds).alias("event_time"),
            F.lit("bench").alias("source"),
            payload.alias("payload"),
            F.floor(ingested_ms / (bucket_seconds * 1000)).cast("bigint").alias("handoff_bucket"),
            F.timestamp_millis(ingested_ms).alias("ingested_at"),
            F.pmod(F.col("id"), F.lit(6)).cast("int").alias("kafka_partition"),
            (F.col("id") * 2 + F.col("copy")).alias("kafka_offset"),
            F.floor(ingested_ms / (bucket_seconds * 1000)).cast("bigint").alias("speed_batch"),
            F.to_date(F.timestamp_millis(ingested_ms)).alias("ingest_date"),
        )
        typed = frame.select(*[F.col(f.name).cast(f.dataType) for f in schema.fields])
        typed.write.format("delta").mode("overwrite").partitionBy("ingest_date").save(f"{lake_root}/master/{event_type}")
        rows[event_type] = spark.read.format("delta").load(f"{lake_root}/master/{event_type}").count()
    return rows


def _fields(versions: dict[int, Contract], schema) -> list:
    payload_names = schema["payload"].dataType.fieldNames()
    specs = {}
    for version in sorted(versions):
        for spec in versions[version].fields:
            specs.setdefault(spec.name, spec)
    return [specs[name] for name in payload_names]


# -- the same views in DuckDB ----------------------------------------------------------------------------------------


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)


def duckdb_view_sql(view: View, files_by_type: dict[str, list[str]], cutoff: int, kinds: dict[str, str]) -> str:
    """One SQL query: first copy of each event up to the cutoff, the view's filter, key and window, its metrics."""
    sql_ops = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
    parts = []
    for source in view.sources:
        files = ", ".join(_literal(f) for f in files_by_type[source])
        conditions = []
        for condition in view.filter:
            column = f"payload.{condition.field}"
            if condition.op in ("in", "not_in"):
                values = ", ".join(_literal(v) for v in condition.value)
                conditions.append(f"{column} {'IN' if condition.op == 'in' else 'NOT IN'} ({values})")
            else:
                conditions.append(f"{column} {sql_ops[condition.op]} {_literal(condition.value)}")
        key = "to_json([" + ", ".join(f"CAST(payload.{d} AS VARCHAR)" for d in view.dimensions) + "])"
        metrics = ", ".join(
            f"CAST(payload.{m.field} AS {'BIGINT' if kinds[m.name] == 'int' else 'DOUBLE'}) AS m_{m.name}" for m in view.metrics if m.field
        )
        parts.append(
            f"SELECT {key} AS key, CAST(floor(epoch(event_time) / {view.grain_seconds}) * {view.grain_seconds} AS BIGINT) AS window_seconds"
            f"{', ' + metrics if metrics else ''} FROM ("
            f"SELECT * FROM read_parquet([{files}]) WHERE handoff_bucket <= {cutoff} "
            f"QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ingested_at, kafka_partition, kafka_offset) = 1)"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        )
    aggregates = []
    for m in view.metrics:
        if m.aggregate == "count":
            aggregates.append(f"count(*) AS {m.name}")
        elif m.aggregate == "sum":
            aggregates.append(f"coalesce(sum(m_{m.name}), 0) AS {m.name}")
        else:
            aggregates.append(f"{m.aggregate}(m_{m.name}) AS {m.name}")
    return f"SELECT key, window_seconds, {', '.join(aggregates)} FROM ({' UNION ALL '.join(parts)}) GROUP BY key, window_seconds"


# -- the benchmark ---------------------------------------------------------------------------------------------------


def _spark_recompute(spark, lake_root: str, out_root: str, cutoff: int) -> dict[tuple, tuple]:
    from batch import delta_io
    from batch.stages import deduplicate
    from batch.transforms import covered, view_rows

    registry = default_contracts()
    master = {t: spark.read.format("delta").load(delta_io.master_path(lake_root, t)) for t in registry}
    firsts = {t: deduplicate(covered(frame, cutoff)).persist() for t, frame in master.items()}
    try:
        for view in default_views().values():
            rows = view_rows(firsts, view, registry)
            rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(f"{out_root}/{view.name}")
    finally:
        for frame in firsts.values():
            frame.unpersist()


def _spark_answers(spark, out_root: str) -> dict[str, dict]:
    from pyspark.sql import functions as F

    answers = {}
    for view in default_views().values():
        frame = spark.read.format("delta").load(f"{out_root}/{view.name}")
        metrics = [m.name for m in view.metrics]
        summary = frame.agg(F.count(F.lit(1)).alias("rows"), *[F.sum(F.col(m).cast("double")).alias(m) for m in metrics]).first()
        answers[view.name] = {"rows": summary["rows"], **{m: summary[m] for m in metrics}}
    return answers


def _duckdb_recompute(files_by_type: dict[str, list[str]], cutoff: int, threads: int) -> dict[str, dict]:
    import duckdb

    from braid.view_compiler import metric_kind

    registry = default_contracts()
    connection = duckdb.connect(config={"threads": threads})
    answers = {}
    for view in default_views().values():
        kinds = {m.name: metric_kind(m, registry, view) for m in view.metrics}
        connection.execute(f"CREATE OR REPLACE TABLE {view.name} AS {duckdb_view_sql(view, files_by_type, cutoff, kinds)}")
        metrics = [m.name for m in view.metrics]
        summary = connection.execute(f"SELECT count(*), {', '.join(f'sum(CAST({m} AS DOUBLE))' for m in metrics)} FROM {view.name}").fetchone()
        answers[view.name] = {"rows": summary[0], **dict(zip(metrics, summary[1:]))}
    connection.close()
    return answers


def bench_batch(settings, sizes: list[int], repeats: int, output: Path, log=print) -> dict[str, Any]:
    import shutil

    from braid.bench_report import machine, versions
    from braid.jvm import ensure_jars
    from braid.spark import session_from_settings

    ensure_jars(settings.jar_cache)
    spark = session_from_settings(settings, "braid-bench-batch")
    root = Path(settings.home) / "bench" / "batch"
    results = []
    for size in sizes:
        lake = str(root / f"lake-{size}")
        shutil.rmtree(lake, ignore_errors=True)
        started = time.perf_counter()
        rows = synthesize_master(spark, lake, size, rules(settings.rules_file).handoff_bucket_seconds)
        log(f"bench: {size:,} events ({sum(rows.values()):,} rows with re-sent copies) written in {time.perf_counter() - started:.0f} s")
        cutoff = 1 << 40  # every bucket: the full history
        files = {t: spark.read.format("delta").load(f"{lake}/master/{t}").inputFiles() for t in rows}
        files = {t: [f.removeprefix("file://") for f in fs] for t, fs in files.items()}
        spark_seconds, duck_seconds = [], []
        for attempt in range(repeats):
            out = str(root / f"views-{size}")
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            _spark_recompute(spark, lake, out, cutoff)
            spark_seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            duck = _duckdb_recompute(files, cutoff, threads=os.cpu_count() or 1)
            duck_seconds.append(time.perf_counter() - started)
            log(f"bench: {size:,} events, run {attempt + 1}: Braid (Spark) {spark_seconds[-1]:.1f} s, DuckDB {duck_seconds[-1]:.1f} s")
        ours = _spark_answers(spark, str(root / f"views-{size}"))
        spark_median, duck_median = statistics.median(spark_seconds), statistics.median(duck_seconds)
        results.append(
            {
                "events": size,
                "rows_with_copies": sum(rows.values()),
                "braid_spark_seconds": [round(s, 2) for s in spark_seconds],
                "duckdb_seconds": [round(s, 2) for s in duck_seconds],
                "braid_events_per_second": round(size / spark_median),
                "duckdb_events_per_second": round(size / duck_median),
                "braid_over_duckdb_throughput": round(duck_median / spark_median, 3),
                "same_answers": _same(ours, duck),
                "view_totals": ours,
            }
        )
        shutil.rmtree(lake, ignore_errors=True)
    spark.stop()
    report = {
        "benchmark": "batch recompute: first copy of each event, every declared view, view tables written",
        "machine": machine(),
        "versions": versions(),
        "settings": {"spark_master": settings.spark_master, "shuffle_partitions": settings.spark_shuffle_partitions},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": results,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _same(ours: dict[str, dict], theirs: dict[str, dict]) -> bool:
    for view, figures in ours.items():
        for name, value in figures.items():
            other = theirs[view][name]
            if value is None or other is None:
                if value != other:
                    return False
            elif abs(float(value) - float(other)) > 1e-6 * max(1.0, abs(float(value))):
                return False
    return True
