"""A class-data-sharing archive for Spark drivers: the JVM maps the classes a Spark + Delta job loads from one file
instead of reading, verifying and linking them from jars at every start.

A cold driver JVM spends much of its first half-minute loading classes (Spark, Scala, Hadoop, Delta: tens of
thousands). On the 2-core development machine the same small Delta job took 30-34 s cold and 23-24 s with this archive
(session start 9-10 s -> 6 s, first Delta read 13-15 s -> 10-11 s), and every driver benefits: the speed job, each
`spark-submit` stage of the batch DAG, `braid batch run`.

The archive is made once, by `braid jars` (a warm-up driver run with -XX:ArchiveClassesAtExit), and only ever used
whole: a truncated archive makes the JVM die with SIGBUS, so it is written under a temporary name, loaded once by a
second driver as a check, and only then renamed into place. Its name carries a hash of the jars, pyspark's version and
the java binary: another JDK or jar set looks for another file, and a driver without a matching archive simply starts
without one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from braid.errors import BraidError

ARCHIVE_DIR = "cds"


def _java() -> Path | None:
    """The java pyspark's launcher runs: $JAVA_HOME/bin/java, else the first on PATH (bin/spark-class does the same)."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"]) / "bin" / "java"
    found = shutil.which("java")
    return Path(found) if found else None


def archive_path(cache: Path) -> Path | None:
    """Where the archive for this jar cache, pyspark and java lives (whether or not it exists); None without java."""
    from braid.jvm import _pyspark_jars, jars_ready, stamp_text

    java = _java()
    if java is None or not java.exists() or not jars_ready(cache):
        return None
    binary = java.resolve()
    # The driver's class path is pyspark's jars folder. The JVM refuses an archive whose class path entries moved or
    # changed (path, size, mtime) and then silently starts without it, so all three are in the name: a reinstalled
    # pyspark or a jar added there (as the Docker image does) looks for another archive instead of never mapping this one.
    classpath = sorted((str(jar), jar.stat().st_size, jar.stat().st_mtime_ns) for jar in _pyspark_jars().glob("*.jar"))
    digest = hashlib.sha256(f"{stamp_text()}|{classpath}|{binary}|{binary.stat().st_size}|{binary.stat().st_mtime_ns}".encode())
    return cache / ARCHIVE_DIR / f"spark-driver-{digest.hexdigest()[:16]}.jsa"


def driver_java_options(cache: Path, enabled: bool = True, extra: str = "") -> str | None:
    """The driver JVM options: the one that maps the archive, when sharing is enabled and a whole archive is in place,
    then `extra` (the settings' `spark_driver_jvm_options`)."""
    path = archive_path(cache) if enabled else None
    options = [f"-XX:SharedArchiveFile={path}"] if path is not None and path.is_file() else []
    return " ".join([*options, *extra.split()]) or None


# What the warm-up driver does: the kinds of work the speed and batch jobs do (Delta appends keyed by an application
# id or tagged, reads, aggregates and a rollup, a Python function over Arrow batches, Arrow to the driver, a micro-batch from a
# Delta stream), so that the classes they load are in the archive.
_WARM_UP = r"""
import sys
from pathlib import Path

from braid.spark import create_session

cache, work = Path(sys.argv[1]), Path(sys.argv[2])
from braid.jvm import module_jars

spark = create_session("braid-cds-warm-up", master="local[2]", jars=module_jars(cache, "spark"), driver_memory="1g",
                       shuffle_partitions=2, ui_enabled=False)
from pyspark.sql import functions as F

rows = spark.range(2000).select(
    F.col("id"), (F.col("id") % 7).alias("bucket"), F.concat(F.lit("k"), (F.col("id") % 13).cast("string")).alias("key"),
    (F.col("id") * 1.5).alias("amount"), F.current_timestamp().alias("at"), F.to_date(F.current_timestamp()).alias("day"),
)
table = str(work / "table")
rows.write.format("delta").mode("append").partitionBy("day").option("txnAppId", "warm-up").option("txnVersion", 0).save(table)  # batch
rows.write.format("delta").mode("append").partitionBy("day").option("userMetadata", '{"app": "warm-up", "batch": 1}').save(table)  # speed
frame = spark.read.format("delta").load(table)
frame.rollup("bucket", "key").agg(F.count(F.lit(1)), F.sum("amount"), F.min("at"), F.percentile_approx("amount", [0.5, 0.99]),
                                  F.grouping_id()).collect()
frame.groupBy("key", F.window("at", "1 minute")).agg(F.max("amount")).join(frame.select("key").distinct(), "key").collect()

def double(batches):
    for batch in batches:
        yield batch

frame.mapInArrow(double, frame.schema).where(F.col("bucket") > 2).toArrow()
from delta.tables import DeltaTable

DeltaTable.forPath(spark, table).history(1).collect()
query = (spark.readStream.format("delta").load(table).writeStream
         .foreachBatch(lambda batch, batch_id: batch.groupBy("bucket").count().collect())
         .option("checkpointLocation", str(work / "checkpoint")).trigger(availableNow=True).start())
query.awaitTermination()
spark.stop()
"""


def ensure_archive(cache: Path, *, log=lambda message: print(message, file=sys.stderr)) -> Path | None:
    """Make the archive for this jar cache unless it exists; returns its path (None when there is no java)."""
    path = archive_path(cache)
    if path is None or path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    work = path.parent / f"warm-up.{os.getpid()}"
    log(f"jars: making the class-data-sharing archive of Spark drivers ({path.name}; about a minute, once)")
    try:
        env = {**os.environ, "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
               "PYSPARK_SUBMIT_ARGS": f'--driver-java-options "-XX:ArchiveClassesAtExit={partial} -Xlog:cds=off '
                                      f'-Xlog:cds+dynamic=off" pyspark-shell'}  # fmt: skip
        made = subprocess.run([sys.executable, "-c", _WARM_UP, str(cache), str(work)], env=env, capture_output=True, text=True)
        if made.returncode != 0 or not partial.is_file():
            raise BraidError(f"jars: the warm-up driver failed ({made.returncode}): {made.stderr.strip()[-500:]}")
        # Loaded once by another driver before it is trusted: a damaged archive would kill every driver at start, and
        # one that does not match the driver's class path would be skipped silently (-Xshare:on makes that an error).
        check = subprocess.run(
            [sys.executable, "-c", "from pyspark.sql import SparkSession as S; S.builder.master('local[1]').getOrCreate().stop()"],
            env={**env, "PYSPARK_SUBMIT_ARGS": f'--driver-java-options "-XX:SharedArchiveFile={partial} -Xshare:on" pyspark-shell'},
            capture_output=True, text=True,
        )  # fmt: skip
        if check.returncode != 0:
            raise BraidError(f"jars: a driver could not start with the new archive: {check.stderr.strip()[-500:]}")
        partial.replace(path)
        for stale in path.parent.glob("spark-driver-*.jsa"):  # other jars or another JDK: one archive per cache
            if stale != path:
                stale.unlink(missing_ok=True)  # a driver mapping it keeps its pages; the file is gone for new ones
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    return path
