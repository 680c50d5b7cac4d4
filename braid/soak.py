"""`braid soak`: the full path at a steady rate for a long time, and whether lag, memory and partitions stayed flat.

Not part of CI. It reuses the ingest benchmark's trial (`braid/bench_ingest.py`): a fresh namespace (topic, keyspace,
lake, checkpoints) on the running local stack, the generator's ~1 KB events through the producer library into Kafka,
`braid speed run` and `braid serve` as their own processes, a prober asking the API's merged `top` query over the last
ten minutes every second. On top of that, the batch layer runs every `batch_every` minutes (`braid batch run` in the
same namespace, its own process), so speed rows are retired after each published version, as in production.

Batch runs are full recomputes (`full_every` 1); with `full_every` N > 1 only every N-th is, the others incremental
(`--incremental`: only the windows touched since the served version are recomputed; 0: only the first, which has no
version to start from). Measured on the soak's data, an incremental run took twice a full one (1,025 s vs 541 s):
each view's touched windows are found by scanning the covered history again, and at one-minute windows nearly every
recent window is touched. They run at a lower CPU priority (`batch_nice`, added to the soak's own niceness): in
production the batch layer has its own cores (a Spark cluster, `docker/`); on one machine the scheduler's priority is
what stands in for that, so a batch run takes the cores the speed layer leaves idle instead of half of those it needs.

Retirement in the soak. A publish retires the speed buckets covered by the oldest version a query may still read,
which is the version it just superseded for `BRAID_BATCH_RETIRE_GRACE_SECONDS`; production lets the daily maintenance
pass catch up, so speed rows live up to two batch intervals plus a day's worth at worst. The soak sets the namespace's
grace to `retire_grace` seconds (60 by default: a query holds a pointer for milliseconds) and runs the same
retirement (`batch.stages.retire`) again once the grace has passed after each publish, so every batch interval ends
in the same state and the thirds of the run can be compared.

Sampled: the lag (Kafka's end offsets minus the newest committed micro-batch's offsets, every 2 s), the resident memory
of each process (Kafka, Cassandra, the Spark driver JVM, the speed job's Python processes, the API; every 5 s), the
driver JVM's live heap (every minute), and the serving tables (every `sample_seconds`): per table the number of partitions, the rows of the largest partition,
the rows in total and, for the versioned batch tables, the most versions side by side in one partition, counted with
CQL (`SELECT <partition key>, count(*) ... GROUP BY <partition key>[, version]`, a full scan, timed); the bytes of the
table's data folder under the node's data directory; and Cassandra's own largest-partition figure from the virtual
table `system_views.max_partition_size` (what `nodetool tablestats` calls "Compacted partition maximum bytes", in
whole MiB there; nodetool itself needs JMX, which the local node does not open).

The verdict, per figure: the samples after its start (the run's first tenth is warm-up; batch figures start at the
first publish) are cut into thirds by count; the figure stayed **flat** when the largest value of the last third is
at most the largest of the first third plus a tolerance:

- lag: the benchmark's thirds (`braid.bench_ingest.steady_thirds`) with 10% of the first third's maximum as tolerance,
  at least one trigger interval's worth of events. The benchmark's own rule (that trigger interval alone) asks a
  5-minute probe with nothing else running whether a rate is sustained; in the soak the lag's peaks are a whole
  micro-batch (30-40 s of events at 4,000/s) whose length follows the batch runs sharing the cores, so two thirds'
  peaks differ by more than 2 s of events with nothing falling behind (measured: +7.5% in one run, -41% in another),
  while a job falling behind by 5% of the rate adds a fifth of a minute's events every minute;
- memory of each process, while the producer runs (an idle last third would flatter it): 10% of the first third's
  maximum, at least 64 MiB (a JVM touches its heap gradually). The Spark driver JVM is judged by two figures
  instead of its resident set, which follows G1's sizing of the heap
  (`braid/jvm/memory.py`): its resident memory outside the Java heap (this rule), and its live heap, the heap a full
  collection leaves, asked of it every minute, judged by the median of each third instead of the largest (a
  collection in the middle of a micro-batch keeps that batch alive, so a sample is what stays plus what is in
  flight; a leak raises every sample, so the median), 25%, at least 128 MiB. The pause each forced collection took is
  reported, and so are the classes whose live instances grew most between the end of the first third of production
  and its end (`jcmd GC.class_histogram`): what grew, by name, when something did;
- speed-view rows (largest partition, total) and batch-view-window rows (largest partition): 25%, at least 100 rows
  (the speed rows are a saw-tooth between retirements, sampled at `sample_seconds`; a leak doubles them within a run);
- versions side by side in a batch partition: at most two, at every sample (the served version and the one it
  replaced, readable for the grace; a publish deletes the older ones). A bound, not a comparison of thirds: a run
  whose first third saw only the first version would otherwise call the second one growth;
- batch-view-window rows: the rows of one version of the largest partition (the thirds rule), since a partition's
  rows are that times the versions side by side.

Maxima rather than means because every healthy figure here is a saw-tooth. Reported but not judged: the rows of the
largest `batch_views` partition (one key's windows of a day span: it grows with the minutes the run covers, by
design, up to 1,440 windows times the live versions), disk bytes (they follow flushes and compactions, not the data
alone) and the virtual table's MiB. Fewer than 6 samples of a judged figure count as grown: flat is only said on
evidence.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from braid.bench_ingest import EVENT_BYTES, Sampler, Trial, steady_thirds
from braid.errors import BraidError
from braid.jvm.memory import HeapInfo, class_histogram, heap_info, histogram_growth, live_heap, resident_outside
from braid.settings import Settings

WARMUP_FRACTION = 0.1
MIN_SAMPLES = 6
LAG_TOLERANCE_FRACTION = 0.10  # of the first third's largest lag; at least one trigger interval's worth of events
MEMORY_TOLERANCE = (0.10, 64.0)  # (fraction of the first third's maximum, at least this many MiB)
# The live heap is judged by the median of each third: a full collection in the middle of a micro-batch keeps that
# batch alive, and at 4,000 events/s a micro-batch holds 100,000-160,000 events, so one sample is what stays plus
# 0-800 MiB in flight (measured: 267-1,367 MiB over one run). While the lag is flat (judged on its own) the part in
# flight has the same spread in every third, so a leak shows as a shift of the median. The least sample, judged
# before, is an extreme of 8-9 draws: two runs whose class histograms showed no growth (the status store aside: a
# few MiB) had a lucky low sample in their first third and were called grown by it. Every minute, for 8-9 samples
# per third in 30 minutes.
LIVE_HEAP_TOLERANCE = (0.25, 128.0)
LIVE_HEAP_EVERY_SECONDS = 60.0  # a forced full collection of the driver's heap: a pause of 1-3 s a minute (default)
# Resident sets reported, not judged: the driver JVM's follows G1's sizing of the heap (see braid/jvm/memory.py); its
# heap after a full collection and its memory outside the heap are judged instead.
UNJUDGED_MEMORY = frozenset({"memory.spark_driver_jvm"})
THIRDS_STATISTICS = {"max": max, "median": statistics.median}
ROWS_TOLERANCE = (0.25, 100.0)
LIVE_VERSIONS = 2  # the served version and the one it replaced, while the grace lasts (the soak's grace < its batch interval)
BATCH_TIMEOUT_SECONDS = 1800
# The prober's query covers a sliding ten minutes, so every query does the same work once the run is ten minutes old
# and spans the batch cutoff (a batch every 5 min). The benchmark's two hours would cover the whole run: each answer
# reads more windows than the one before, and the API's memory would follow the run's age, not a leak.
QUERY_RANGE = "-10m"

# Serving tables: partition key columns, and the clustering column that holds versions side by side (if any).
SERVING_TABLES = {
    "speed_views": (("view_name", "handoff_bucket", "shard"), None),
    "batch_views": (("view_name", "key", "span_start"), "version"),
    "batch_view_windows": (("view_name", "window_start"), "version"),
}
# figure -> tolerance (fraction, minimum) for the thirds rule, or a bound every sample must keep; the figures of the
# serving tables that the verdict judges (the others are reported only)
JUDGED_PARTITION_FIGURES = {
    "speed_views.largest_partition_rows": ROWS_TOLERANCE,
    "speed_views.rows_in_retired_buckets": 0,
    "batch_views.versions_per_partition": LIVE_VERSIONS,
    "batch_view_windows.largest_version_rows": ROWS_TOLERANCE,
    "batch_view_windows.versions_per_partition": LIVE_VERSIONS,
}

RULES = {
    "thirds": "samples after the figure's start cut into thirds by count; flat when max(last third) <= max(first third) + tolerance",
    "start": f"the run's first {WARMUP_FRACTION:.0%} is warm-up; batch-table figures start at the first publish; memory figures end "
    "with production (the serving tables are judged until the last batch run's retirement)",
    "lag": f"braid.bench_ingest.steady_thirds (30 s warm-up), tolerance {LAG_TOLERANCE_FRACTION:.0%} of the first third's max, "
    "at least one trigger interval's worth of events at the rate",
    "memory": f"tolerance {MEMORY_TOLERANCE[0]:.0%} of the first third's max, at least {MEMORY_TOLERANCE[1]:.0f} MiB; the Spark driver "
    "JVM by its resident memory outside the Java heap (memory.spark_driver_jvm_outside_heap) and its live heap, not its whole RSS",
    "live heap": f"live_heap.spark_driver_jvm: the heap a full collection leaves (jcmd GC.run, GC.heap_info) every "
    "settings.live_heap_seconds, judged by the medians of the thirds (a sample is what stays plus the micro-batch in flight): "
    f"flat when median(last third) <= median(first third) + max({LIVE_HEAP_TOLERANCE[0]:.0%}, {LIVE_HEAP_TOLERANCE[1]:.0f} MiB); "
    "the classes that grew most between the end of the first third of production and its end are reported, not judged",
    "rows": f"tolerance {ROWS_TOLERANCE[0]:.0%} of the first third's max, at least {ROWS_TOLERANCE[1]:.0f} rows",
    "versions": f"at most {LIVE_VERSIONS} at every sample (a bound, not thirds)",
    "retired": "speed_views.rows_in_retired_buckets: 0 at every sample (a retired bucket holds no rows)",
    "evidence": f"fewer than {MIN_SAMPLES} samples counts as grown",
    "not judged": "memory.spark_driver_jvm (G1 commits and returns heap with the load; bounded by -Xmx plus what is outside the heap), "
    "batch_views.largest_partition_rows (grows with the minutes covered, by design), speed_views.rows (the events since "
    "the oldest readable version's cutoff: it follows the batch schedule and run time), *.disk_bytes, *.max_partition_mib, *.rows of batch tables",
}


def figure_verdict(
    samples: list[tuple[float, float]], *, start: float, fraction: float, minimum: float, end: float = float("inf"), statistic: str = "max"
) -> dict[str, Any]:
    """Whether one figure stayed flat: the max of the last third of the samples in [start, end] against the max of the
    first third plus max(fraction x that max, minimum); with `statistic="median"`, the medians instead (a figure whose
    samples are what stays plus a part that comes and goes with the same spread all run long)."""
    if statistic not in THIRDS_STATISTICS:
        raise ValueError(f"figure_verdict: statistic must be one of {sorted(THIRDS_STATISTICS)}, got {statistic!r}")
    values = [value for at, value in samples if start <= at <= end]
    if len(values) < MIN_SAMPLES:
        return {"flat": False, "samples": len(values), "reason": f"fewer than {MIN_SAMPLES} samples"}
    third = len(values) // 3
    pick, name = THIRDS_STATISTICS[statistic], statistic
    first, last = pick(values[:third]), pick(values[-third:])
    allowed = first + max(fraction * first, minimum)
    return {"flat": last <= allowed, "samples": len(values), f"first_third_{name}": first, f"last_third_{name}": last, "allowed": round(allowed, 1)}


def bound_verdict(samples: list[tuple[float, float]], *, start: float, bound: float) -> dict[str, Any]:
    """Whether every sample at or after `start` stayed at or below `bound`."""
    values = [value for at, value in samples if at >= start]
    if len(values) < MIN_SAMPLES:
        return {"flat": False, "samples": len(values), "reason": f"fewer than {MIN_SAMPLES} samples"}
    return {"flat": max(values) <= bound, "samples": len(values), "max": max(values), "allowed": bound}


def lag_verdict(samples: list[tuple[float, float]], producing_until: float, rate: float, trigger_seconds: float) -> dict[str, Any]:
    thirds = steady_thirds([(at, int(value)) for at, value in samples], producing_until)
    if thirds is None:
        return {"flat": False, "samples": len(samples), "reason": f"fewer than {MIN_SAMPLES} samples while producing"}
    first, last = max(thirds[0]), max(thirds[1])
    allowed = first + max(LAG_TOLERANCE_FRACTION * first, rate * trigger_seconds)
    return {"flat": last <= allowed, "samples": len(thirds[0]) * 3, "first_third_max": first, "last_third_max": last, "allowed": round(allowed, 1)}


def verdicts(
    samples: dict[str, list[tuple[float, float]]],
    *,
    started: float,
    producing_until: float,
    rate: float,
    trigger_seconds: float,
    first_publish: float | None,
) -> dict[str, dict[str, Any]]:
    """The verdict of every judged figure; `samples` maps `lag`, `memory.<process>` and `<table>.<figure>` to
    (time, value) series."""
    warmup = started + WARMUP_FRACTION * (producing_until - started)
    judged: dict[str, dict[str, Any]] = {"lag": lag_verdict(samples.get("lag", []), producing_until, rate, trigger_seconds)}
    for name, series in sorted(samples.items()):
        if name.startswith("memory.") and name not in UNJUDGED_MEMORY:
            judged[name] = figure_verdict(series, start=warmup, end=producing_until, fraction=MEMORY_TOLERANCE[0], minimum=MEMORY_TOLERANCE[1])
        elif name.startswith("live_heap."):
            judged[name] = figure_verdict(series, start=warmup, end=producing_until, fraction=LIVE_HEAP_TOLERANCE[0], minimum=LIVE_HEAP_TOLERANCE[1],
                                          statistic="median")  # fmt: skip
    for name, rule in JUDGED_PARTITION_FIGURES.items():
        if name.startswith("batch_"):
            if first_publish is None:
                judged[name] = {"flat": None, "samples": 0, "reason": "no batch version was published"}
                continue
            start = first_publish
        else:
            start = started
        if isinstance(rule, tuple):
            judged[name] = figure_verdict(samples.get(name, []), start=start, fraction=rule[0], minimum=rule[1])
        else:
            judged[name] = bound_verdict(samples.get(name, []), start=start, bound=rule)
    return judged


class ServingTableSizes:
    """Partition sizes of the serving tables, by CQL, plus the tables' folders on disk and Cassandra's own figure."""

    def __init__(self, session, keyspace: str, data_dir: Path) -> None:
        self.session, self.keyspace, self.data_dir = session, keyspace, data_dir
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.retired_through: int | None = None

    def sample(self) -> float:
        """Take one sample of every figure; returns the seconds the scans took."""
        from batch.cassandra_io import RETIRE_JOB
        from braid.cassandra_roles import quote_identifier

        began = time.time()
        figures: dict[str, float] = {}
        # read before the scan: retirement deletes a bucket's rows before it records the bucket as retired
        retired = self.session.execute(f"SELECT complete_through FROM {quote_identifier(self.keyspace)}.pipeline_progress WHERE job = %s", (RETIRE_JOB,)).one()
        self.retired_through = retired.complete_through if retired else None
        for table, (partition_key, versions) in SERVING_TABLES.items():
            figures.update({f"{table}.{name}": value for name, value in self.count_rows(table, partition_key, versions).items()})
            figures[f"{table}.disk_bytes"] = self.disk_bytes(table)
        for row in self.session.execute("SELECT table_name, mebibytes FROM system_views.max_partition_size WHERE keyspace_name = %s",
                                        (self.keyspace,)):  # fmt: skip
            if row.table_name in SERVING_TABLES:
                figures[f"{row.table_name}.max_partition_mib"] = float(row.mebibytes)
        took = time.time() - began
        figures["scan_seconds"] = round(took, 3)
        for name, value in figures.items():
            self.samples.setdefault(name, []).append((began, value))
        return took

    def count_rows(self, table: str, partition_key: tuple[str, ...], versions: str | None) -> dict[str, float]:
        from cassandra.query import SimpleStatement

        group = ", ".join(partition_key + ((versions,) if versions else ()))
        # table and columns come from SERVING_TABLES above, never from input
        statement = SimpleStatement(f"SELECT {group}, count(*) AS rows FROM {self.keyspace}.{table} GROUP BY {group}", fetch_size=5000)
        rows: dict[tuple, int] = {}
        kept: dict[tuple, int] = {}
        largest_version = 0
        for row in self.session.execute(statement, timeout=120):
            partition = tuple(getattr(row, column) for column in partition_key)
            rows[partition] = rows.get(partition, 0) + row.rows
            kept[partition] = kept.get(partition, 0) + 1
            largest_version = max(largest_version, row.rows)
        figures = {
            "partitions": float(len(rows)),
            "largest_partition_rows": float(max(rows.values(), default=0)),
            "rows": float(sum(rows.values())),
        }
        if versions:
            figures["versions_per_partition"] = float(max(kept.values(), default=0))
            figures["largest_version_rows"] = float(largest_version)
        if "handoff_bucket" in partition_key:
            at = partition_key.index("handoff_bucket")
            through = self.retired_through
            figures["rows_in_retired_buckets"] = float(sum(n for key, n in rows.items() if through is not None and key[at] <= through))
            if through is not None:
                figures["retired_through_bucket"] = float(through)
        return figures

    def disk_bytes(self, table: str) -> float:
        # a table's folder is <data>/<keyspace>/<table>-<id>; a dropped and re-created table leaves its old folder
        total = 0
        for folder in (self.data_dir / self.keyspace).glob(f"{table}-*"):
            total += sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        return float(total)


class DriverHeap:
    """The speed job's driver JVM: its live heap (after a full collection asked of it) and its resident memory
    outside the Java heap. The JVM is looked up at each sample: the job may restart it."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.pauses: list[tuple[float, float]] = []  # (when, milliseconds the forced collection took)
        self._heaps: dict[int, HeapInfo] = {}  # pid -> its heap's address range (reserved once, at start)
        self.histograms: list[tuple[float, dict[str, tuple[int, int]] | str]] = []  # (when, live objects per class or the error)

    def _pid(self) -> int | None:
        pids = self.trial.speed_jvm_pids()
        return pids[0] if pids else None

    def live(self) -> float | None:
        pid = self._pid()
        if pid is None:
            return None
        began = time.time()
        info = live_heap(pid)
        self.pauses.append((began, round((time.time() - began) * 1000, 1)))
        self._heaps[pid] = info
        return info.used_kib / 1024

    def histogram(self, at: float) -> None:
        """Keep the live objects per class now (a forced full collection); an error is kept in their place."""
        pid = self._pid()
        try:
            self.histograms.append((at, class_histogram(pid) if pid is not None else "no driver JVM"))
        except (BraidError, subprocess.TimeoutExpired) as error:
            self.histograms.append((at, str(error)))

    def growth(self, started: float) -> dict[str, Any] | None:
        """What grew between the first histogram and the last, by class, with their times into the run."""
        if len(self.histograms) < 2:
            return None
        (first_at, first), (last_at, last) = self.histograms[0], self.histograms[-1]
        where = {"from_seconds": round(first_at - started, 1), "to_seconds": round(last_at - started, 1)}
        if isinstance(first, str) or isinstance(last, str):
            return {**where, "error": first if isinstance(first, str) else last}
        return {**where, **histogram_growth(first, last)}

    def outside_heap(self) -> float | None:
        pid = self._pid()
        if pid is None:
            return None
        if pid not in self._heaps:
            self._heaps[pid] = heap_info(pid)
        info = self._heaps[pid]
        return resident_outside(pid, info.start, info.end) / 2**20


def default_rate(bench_report: Path) -> int:
    """Half the sustained rate the ingest benchmark recorded."""
    try:
        sustained = json.loads(bench_report.read_text())["sustained_rate"]
    except FileNotFoundError:
        raise BraidError(f"soak: {bench_report} not found; run `braid bench ingest` first or give --rate") from None
    except (ValueError, KeyError) as error:
        raise BraidError(f"soak: {bench_report} has no sustained_rate ({error}); give --rate") from None
    if not sustained:
        raise BraidError(f"soak: {bench_report} records no sustained rate; give --rate")
    return max(1, int(sustained) // 2)


class BatchSchedule:
    """Every `every` seconds, `braid batch run` in the soak's namespace; after each publish and the retire grace, the
    batch layer's retirement once more (see the module docstring)."""

    def __init__(self, trial: Trial, every: float, grace: float, log: Callable[[str], None], *, full_every: int = 0, nice: int = 0) -> None:
        self.trial, self.every, self.grace, self.log = trial, every, grace, log
        self.full_every, self.nice = full_every, nice
        self.runs: list[dict[str, Any]] = []
        self.retirements: list[dict[str, Any]] = []
        self.first_publish: float | None = None
        self._next_run: float | None = None
        self._retire_at: float | None = None
        self._worker: threading.Thread | None = None

    def start(self, now: float) -> None:
        self._next_run = now + self.every if self.every > 0 else None

    def tick(self, now: float) -> None:
        """Start a due run in the background (the soak's loop keeps sampling and reporting meanwhile); one at a time,
        so a run longer than the interval is followed by the next one at once."""
        if self._retire_at is not None and now >= self._retire_at:  # also while the next run computes: it reads no speed row
            self._retire_at = None
            self._retire()
        if self._worker is not None and self._worker.is_alive():
            return
        if self._next_run is not None and now >= self._next_run:
            self._next_run += self.every
            self._worker = threading.Thread(target=self._run, name="soak-batch", daemon=True)
            self._worker.start()

    def finish(self) -> None:
        """Wait for the run in progress, if any."""
        if self._worker is not None:
            self._worker.join(timeout=BATCH_TIMEOUT_SECONDS + 60)

    def mode(self, number: int) -> str:
        """`full` or `incremental` for the `number`-th run (from 1)."""
        if number == 1 or (self.full_every and number % self.full_every == 0):
            return "full"
        return "incremental"

    def _run(self) -> None:
        logs = self.trial.work / self.trial.name
        number = len(self.runs) + 1
        mode = self.mode(number)
        command = [sys.executable, "-m", "braid.cli", "batch", "run", *(["--incremental"] if mode == "incremental" else [])]
        nice = self.nice
        began = time.time()
        with open(logs / f"batch-{number}.log", "wb") as out:
            try:
                finished = subprocess.run(command, env=self.trial.env(), stdout=out, stderr=subprocess.STDOUT,
                                          timeout=BATCH_TIMEOUT_SECONDS, preexec_fn=(lambda: os.nice(nice)) if nice else None)  # fmt: skip
                code = finished.returncode
            except subprocess.TimeoutExpired:
                code = None
        ended = time.time()
        version = self._served()
        run = {"started": began, "seconds": round(ended - began, 1), "mode": mode, "exit_code": code, "served_version": version}
        self.runs.append(run)
        if code == 0:
            self.first_publish = self.first_publish or ended
            self._retire_at = ended + self.grace + 5
        self.log(f"soak: batch run {len(self.runs)} ({mode}): {'version ' + str(version) + ' served' if code == 0 else f'FAILED (exit {code})'} "
                 f"in {run['seconds']:.0f} s; log {logs / f'batch-{len(self.runs)}.log'}")  # fmt: skip

    def _served(self) -> int | None:
        from batch.cassandra_io import PIPELINE

        row = self.trial.session.execute("SELECT version FROM batch_pointer WHERE pipeline = %s", (PIPELINE,)).one()
        return row.version if row else None

    def _retire(self) -> None:
        from batch import stages
        from batch.job import batch_context

        began = time.time()
        with batch_context(self.trial.settings, log=lambda message: None) as context:
            deleted = stages.retire(context)
        self.retirements.append({"at": began, "partitions_deleted": deleted})


def soak(
    base: Settings,
    *,
    rate: int,
    minutes: float,
    batch_every: float,
    retire_grace: int,
    full_every: int = 1,
    batch_nice: int = 0,
    sample_seconds: float,
    live_heap_seconds: float = LIVE_HEAP_EVERY_SECONDS,
    producers: int,
    output: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from braid.bench_report import machine, versions

    seconds = minutes * 60
    work = base.home / "soak"
    work.mkdir(parents=True, exist_ok=True)
    trial = Trial(base, rate, seconds, work, producers, log, prefix="soak",
                  overrides={"batch_retire_grace_seconds": str(retire_grace)})  # fmt: skip
    log(f"soak: {rate:,} events/s for {minutes:g} min, batch every {batch_every:g} min ({trial.name}, logs in {work / trial.name})")
    trial.start()
    sizes = ServingTableSizes(trial.session, trial.settings.cassandra_keyspace, base.service_root / "cassandra" / "data" / "data")
    driver = DriverHeap(trial)
    memory = Sampler(trial.memory_probes(), period=5.0)
    # Its own thread: in one run the memory sampler, this probe among the others, stalled from its first sample to the
    # end of production (no error counted; cause not found) and took every process's figure with it.
    outside = Sampler({"spark_driver_jvm_outside_heap": driver.outside_heap}, period=5.0)
    heap = Sampler({"spark_driver_jvm": driver.live}, period=live_heap_seconds)
    lags = Sampler({"lag": trial.lag}, period=2.0)
    tables = Sampler({"scan_seconds": sizes.sample}, period=sample_seconds)
    queries: list[tuple[float, float]] = []

    def probe_query() -> None:
        began = time.time()
        trial.probe_visible(trial.http, start=QUERY_RANGE)
        queries.append((began, (time.time() - began) * 1000))

    prober = Sampler({"query": probe_query}, period=1.0)
    schedule = BatchSchedule(trial, batch_every * 60, retire_grace, log, full_every=full_every, nice=batch_nice)
    produced: dict[str, Any] = {}
    def produce() -> None:
        produced["summary"] = trial.produce(seconds, seed=rate)
        produced["until"] = time.time()  # the main loop may be waiting for a batch run when production ends

    producer = threading.Thread(target=produce, daemon=True)
    started = time.time()
    try:
        for sampler in (memory, outside, heap, lags, tables, prober):
            sampler.start()
        producer.start()
        schedule.start(started)
        next_note = started + 60
        first_third_ends = started + seconds / 3
        while producer.is_alive():
            for process, what in ((trial.speed, "speed job"), (trial.api, "API")):
                if process.poll() is not None:
                    raise BraidError(f"soak: the {what} exited with {process.returncode} after {time.time() - started:.0f} s; see {work / trial.name}")
            schedule.tick(time.time())
            if not driver.histograms and time.time() >= first_third_ends:
                driver.histogram(time.time())
            if time.time() >= next_note:
                next_note += 60
                lag = lags.samples["lag"][-1][1] if lags.samples["lag"] else None
                log(f"soak: {(time.time() - started) / 60:.0f} of {minutes:g} min, lag {lag:,.0f} events" if lag is not None else "soak: no lag yet")
            producer.join(timeout=1)
        if "summary" not in produced:
            raise BraidError(f"soak: the producer stopped without a summary; see {work / trial.name}")
        producing_until = produced["until"]
        driver.histogram(time.time())  # before the drain: the same load in flight as at the first one
        drained_at = None
        while time.time() < producing_until + 120:
            last = lags.samples["lag"][-1] if lags.samples["lag"] else None
            if last and last[0] > producing_until and last[1] == 0:
                drained_at = last[0]
                break
            time.sleep(1)
        schedule.finish()  # a run the end of production caught half-way is measured in full
        tables.stop()
        sizes.sample()  # and the tables as that run (and its retirement) left them
    finally:
        for sampler in (prober, tables, lags, heap, outside, memory):
            if sampler.is_alive():
                sampler.stop()
        trial.stop()
    try:
        ends = _topic_end_offsets(trial)
        batches = list(trial.session.execute("SELECT input_rows FROM speed_batches WHERE job = 'speed'"))
    finally:
        trial.close()
    summary = produced["summary"]
    samples: dict[str, list[tuple[float, float]]] = {"lag": lags.samples["lag"]}
    samples.update({f"memory.{name}": series for sampler in (memory, outside) for name, series in sampler.samples.items()})
    samples.update({f"live_heap.{name}": series for name, series in heap.samples.items()})
    samples["forced_gc_ms.spark_driver_jvm"] = driver.pauses
    samples.update(sizes.samples)
    samples["query_ms"] = queries
    judged = verdicts(samples, started=started, producing_until=producing_until, rate=rate,
                      trigger_seconds=trial.settings.speed_trigger_seconds, first_publish=schedule.first_publish)  # fmt: skip
    failed_batches = [run for run in schedule.runs if run["exit_code"] != 0]
    grew = sorted(name for name, verdict in judged.items() if verdict["flat"] is False)
    report = {
        "benchmark": "soak: the full path (producer -> Kafka -> speed -> Delta + Cassandra -> merged queries; batch runs) at a steady rate",
        "machine": machine(),
        "versions": versions(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "namespace": trial.name,
        "settings": {
            "rate": rate,
            "minutes": minutes,
            "batch_every_minutes": batch_every,
            "retire_grace_seconds": retire_grace,
            "full_every": full_every,
            "batch_nice": batch_nice,
            "sample_seconds": sample_seconds,
            "live_heap_seconds": live_heap_seconds,
            "event_bytes": EVENT_BYTES,
            "producer_processes": producers,
            "topic_partitions": base.topic_partitions,
            "spark_master": base.spark_master,
            "speed_trigger_seconds": trial.settings.speed_trigger_seconds,
        },
        "partition_sizes_by": "CQL: count(*) per partition (GROUP BY the partition key, and version for batch tables), a full scan per "
        "table per sample; Cassandra's own figure from system_views.max_partition_size (whole MiB); data folder bytes. "
        "nodetool tablestats is not used: the local node does not open JMX",
        "rules": RULES,
        "flat": not grew and not failed_batches,
        "grew": grew,
        "verdicts": judged,
        "produced": summary.produced,
        "producer_rate": round(summary.produced / summary.seconds, 1) if summary.seconds else None,
        "topic_records": sum(ends),
        "consumed": sum(batch.input_rows or 0 for batch in batches),
        "drain_seconds": round(drained_at - producing_until, 1) if drained_at else None,
        "batch_runs": [{**run, "started": round(run["started"] - started, 1)} for run in schedule.runs],
        "failed_batch_runs": len(failed_batches),
        "retirements": [{**entry, "at": round(entry["at"] - started, 1)} for entry in schedule.retirements],
        "live_heap_growth_by_class": driver.growth(started),
        "sampler_errors": {"lag": lags.errors, "memory": memory.errors + outside.errors, "live_heap": heap.errors, "tables": tables.errors, "queries": prober.errors},
        "samples": {name: [(round(at - started, 1), value) for at, value in series] for name, series in samples.items()},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def _topic_end_offsets(trial: Trial) -> list[int]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=trial.settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             **trial.security.client_config())  # fmt: skip
    try:
        return list(consumer.end_offsets(trial.partitions).values())
    finally:
        consumer.close()


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per judged figure, then the batch runs and the accounting."""
    lines = []
    for name, verdict in report["verdicts"].items():
        if verdict["flat"] is None:
            state = "skipped"
        else:
            state = "flat" if verdict["flat"] else "GREW"
        pick = next((name for name in THIRDS_STATISTICS if f"first_third_{name}" in verdict), None)
        if pick is not None:
            detail = (f"first third {pick} {verdict[f'first_third_{pick}']:,.1f}, last third {pick} {verdict[f'last_third_{pick}']:,.1f}, "
                      f"allowed {verdict['allowed']:,.1f}")  # fmt: skip
        elif "max" in verdict:
            detail = f"max {verdict['max']:,.1f}, allowed at most {verdict['allowed']:,.1f}"
        else:
            detail = verdict.get("reason", "")
        lines.append(f"soak: {name:<42} {state:<7} ({detail}; {verdict['samples']} samples)")
    growth = report.get("live_heap_growth_by_class")
    if growth and "error" in growth:
        lines.append(f"soak: live heap by class: {growth['error']}")
    elif growth:
        most = ", ".join(f"{entry['class']} {entry['bytes'] / 2**20:+,.1f}" for entry in growth["classes"][:5])
        lines.append(f"soak: live heap from {growth['from_seconds'] / 60:.0f} to {growth['to_seconds'] / 60:.0f} min: "
                     f"{growth['bytes'] / 2**20:+,.1f} MiB; grew most (MiB): {most or 'none'}")  # fmt: skip
    runs = report["batch_runs"]
    published = [run for run in runs if run["exit_code"] == 0]
    lines.append(f"soak: batch runs {len(runs)}, published {len(published)}, failed {report['failed_batch_runs']}; "
                 f"served version {published[-1]['served_version'] if published else None}")  # fmt: skip
    lines.append(f"soak: produced {report['produced']:,} ({report['producer_rate']:,}/s), topic holds {report['topic_records']:,}, "
                 f"speed consumed {report['consumed']:,}, drained {report['drain_seconds']} s after the producer stopped")  # fmt: skip
    return lines
