"""The benchmark suite's report: from the JSON each benchmark wrote, PNG charts, a Markdown table (embedded in the
README between markers) and `summary.json`, the per-core figures the capacity table is worked out from.

Pure reading and drawing: `braid bench report` rebuilds everything from the JSON files without measuring again.
"""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

README_START = "<!-- bench:start (written by `braid bench report`; edits here are overwritten) -->"
README_END = "<!-- bench:end -->"
PYTHON_PACKAGES = ("pyspark", "delta-spark", "kafka-python", "cassandra-driver", "duckdb", "fastapi", "apache-airflow")


def machine() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    from braid.jvm import pinned_versions

    found = {name: version(name) for name in PYTHON_PACKAGES}
    pinned = pinned_versions()
    for name in ("kafka.version", "cassandra.version", "spark.version", "delta.version"):
        if name in pinned:
            found[name.split(".")[0] + " (jvm)"] = pinned[name]
    return found


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def per_core(ingest, batch, serving) -> dict[str, Any]:
    """The figures a capacity plan scales from: throughput divided by the cores of the machine that measured it."""
    summary: dict[str, Any] = {"event_bytes": 1000}
    if ingest and ingest.get("sustained_rate"):
        summary["ingest_events_per_second_per_core"] = round(ingest["sustained_rate"] / ingest["machine"]["cores"])
        summary["machine"] = ingest["machine"]
    if batch and batch.get("results"):
        largest = max(batch["results"], key=lambda result: result["events"])
        cores = batch["machine"].get("cores") or batch["machine"].get("cpus")
        summary["batch_events_per_second_per_core"] = round(largest["braid_events_per_second"] / cores)
        summary.setdefault("machine", batch["machine"])
    if serving and serving.get("results"):
        series = [result for result in serving["results"] if result["query"] == "series"]
        if series:
            cores = serving["machine"].get("cores") or serving["machine"].get("cpus")
            summary["serving_requests_per_second_per_core"] = round(max(r["per_second"] for r in series) / cores, 1)
    return summary


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value >= 100:
        value = round(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}{unit}"
    return f"{value:,}{unit}"


def _seconds(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"


def markdown(ingest, batch, serving) -> str:
    lines: list[str] = []
    source = ingest or batch or serving
    if source:
        m = source["machine"]
        cores = m.get("cores") or m.get("cpus")
        cpu = f", {m['cpu']}" if m.get("cpu") else ""
        lines.append(f"Measured on a {cores}-core, {m.get('memory_gib', '?')} GiB machine{cpu} ({m.get('platform', '')}).")
        if source.get("versions"):
            lines.append("Versions: " + ", ".join(f"{name} {value}" for name, value in source["versions"].items()) + ".")
        lines.append("")
    if ingest:
        target = ingest["target"]
        lines += [
            "**Ingest to fresh view** (`bench/ingest.json`, `bench/ingest_freshness.png`, `bench/ingest_lag.png`): ~1 KB events,"
            f" {ingest['settings']['producer_processes']} producer processes, {ingest['settings']['topic_partitions']} partitions;"
            " freshness is produced -> visible in a merged API query; medians over the sustained runs at each rate.",
            "",
            "| rate (events/s) | runs | freshness p50 | p95 | p99 |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in ingest["freshness_by_rate"]:
            lines.append(
                f"| {_fmt(row['rate'])} | {row['runs']} | {_seconds(row['freshness_p50_ms'])} | {_seconds(row['freshness_p95_ms'])} | {_seconds(row['freshness_p99_ms'])} |"
            )
        alone = ingest.get("generator_alone")
        if alone:
            lines += ["", f"The load generator alone, {alone['producer_processes']} processes with nothing consuming:"
                      f" {_fmt(alone['generate_only_events_per_second'])} events/s generated,"
                      f" {_fmt(alone['to_kafka_events_per_second'])} events/s produced to Kafka."]  # fmt: skip
        held = ingest.get("sustained_run")
        if ingest.get("sustained_rate"):
            lines += ["", f"Highest sustained rate: **{_fmt(ingest['sustained_rate'])} events/s** for {_fmt(held['seconds'])} s"
                      f" (lag max {_fmt(held['lag_max_events'])} events, drained in {held['drain_seconds']} s). Target:"
                      f" {_fmt(target['events_per_second'])} events/s within {_seconds(target['freshness_ms'])}: **{ingest['gap']}x short**"
                      f" of the rate; p99 freshness {_seconds(held['freshness_ms']['p99'])} against {_seconds(target['freshness_ms'])}."]  # fmt: skip
        else:
            lines += ["", "No rate tried was sustained."]
        if held and held.get("peak_memory_mib"):
            lines += ["", "Peak resident memory during the sustained run (MiB): "
                      + ", ".join(f"{name.replace('_', ' ')} {_fmt(value)}" for name, value in held["peak_memory_mib"].items()) + "."]  # fmt: skip
        lines.append("")
    if batch:
        lines += [
            "**Batch recompute** (`bench/batch.json`, `bench/batch_growth.png`): every view from a Delta snapshot, first copy per"
            " event, view tables written; DuckDB computes the same views over the same snapshot; medians of the runs.",
            "",
            "| events | runs | Braid (Spark) | events/s | DuckDB | events/s | Braid / DuckDB throughput | same answers |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
        ]
        for result in sorted(batch["results"], key=lambda r: r["events"]):
            spark, duck = result["braid_spark_seconds"], result["duckdb_seconds"]
            lines.append(
                f"| {_fmt(result['events'])} | {len(spark)} | {_median(spark):.1f} s | {_fmt(result['braid_events_per_second'])} |"
                f" {_median(duck):.1f} s | {_fmt(result['duckdb_events_per_second'])} | {result['braid_over_duckdb_throughput']} |"
                f" {'yes' if result['same_answers'] else 'NO'} |"
            )
        lines.append("")
    if serving:
        lines += [
            "**Serving** (`bench/serving.json`, `bench/serving_latency.png`): merged queries through the HTTP API;"
            f" {serving.get('seconds_per_run', '?')} s per run, "
            + (f"medians of {serving['repeats']} runs." if serving.get("repeats", 1) > 1 else "one run each."),
            "",
            "| query | clients | requests/s | p50 | p99 |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for result in serving["results"]:
            lines.append(f"| {result['query']} | {result['clients']} | {_fmt(result['per_second'])} | {_fmt(result['p50_ms'], ' ms')} | {_fmt(result['p99_ms'], ' ms')} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def charts(folder: Path, ingest, batch, serving) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written: list[Path] = []
    note = ""
    source = ingest or batch or serving
    if source:
        m = source["machine"]
        note = f"{m.get('cores') or m.get('cpus')} cores, {m.get('memory_gib', '?')} GiB; {source.get('measured_at', '')[:10]}"

    def save(figure, name: str) -> None:
        figure.text(0.99, 0.01, note, ha="right", va="bottom", fontsize=7, color="grey")
        figure.tight_layout()
        path = folder / name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)

    if ingest and ingest["freshness_by_rate"]:
        rows = ingest["freshness_by_rate"]
        figure, axes = plt.subplots(figsize=(6.4, 3.6))
        for name, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            axes.plot([r["rate"] for r in rows], [(r[f"freshness_{name}_ms"] or 0) / 1000 for r in rows], style, label=name)
        axes.axhline(ingest["target"]["freshness_ms"] / 1000, color="red", lw=0.8, label="budget")
        axes.set(xlabel="events/s (sustained)", ylabel="produced -> visible (s)", title="Ingest to fresh view: freshness")
        axes.legend()
        save(figure, "ingest_freshness.png")
    if ingest and ingest["trials"]:
        figure, axes = plt.subplots(figsize=(6.4, 3.6))
        for trial in ingest["trials"]:
            if trial["phase"] in ("search", "sustain") and trial["lag_series"]:
                series = trial["lag_series"]
                label = f"{trial['rate_target']:,}/s{' (held)' if trial['sustained'] else ''}"
                axes.plot([at for at, _ in series], [lag for _, lag in series], label=label, lw=1)
        axes.set(xlabel="seconds since the producer started", ylabel="lag (events)", title="Kafka lag behind the speed layer")
        axes.legend(fontsize=7)
        save(figure, "ingest_lag.png")
    if batch and batch["results"]:
        results = sorted(batch["results"], key=lambda r: r["events"])
        figure, axes = plt.subplots(figsize=(6.4, 3.6))
        sizes = [r["events"] for r in results]
        axes.loglog(sizes, [_median(r["braid_spark_seconds"]) for r in results], "o-", label="Braid (Spark)")
        axes.loglog(sizes, [_median(r["duckdb_seconds"]) for r in results], "s--", label="DuckDB")
        axes.set(xlabel="events in the master dataset", ylabel="seconds (median)", title="Batch recompute: time vs size")
        axes.legend()
        save(figure, "batch_growth.png")
    if serving and serving["results"]:
        figure, axes = plt.subplots(figsize=(6.4, 3.6))
        for query, colour in (("series", "tab:blue"), ("top", "tab:orange")):
            rows = [r for r in serving["results"] if r["query"] == query]
            axes.plot([r["clients"] for r in rows], [r["p50_ms"] for r in rows], "o-", color=colour, label=f"{query} p50")
            axes.plot([r["clients"] for r in rows], [r["p99_ms"] for r in rows], "^:", color=colour, label=f"{query} p99")
        axes.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms", title="Serving: merged query latency")
        axes.legend(fontsize=7)
        save(figure, "serving_latency.png")
    return written


def embed(readme: Path, table: str) -> bool:
    """Replace the README's text between the bench markers; False when the markers are missing."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: f"{README_START}\n{table}{README_END}", text))
    return True


def build(folder: Path, readme: Path | None = None) -> dict[str, Any]:
    """Charts, `results.md` and `summary.json` from the JSON files in `folder`; the table into `readme` if given."""
    ingest, batch, serving = (_load(folder, name) for name in ("ingest", "batch", "serving"))
    if not (ingest or batch or serving):
        raise FileNotFoundError(f"no benchmark results in {folder} (ingest.json, batch.json, serving.json)")
    table = markdown(ingest, batch, serving)
    (folder / "results.md").write_text(table)
    summary = {**per_core(ingest, batch, serving), "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    written = charts(folder, ingest, batch, serving)
    embedded = embed(readme, table) if readme is not None and readme.exists() else False
    return {"charts": [str(path) for path in written], "summary": summary, "readme": embedded}
