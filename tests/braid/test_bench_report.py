"""The benchmark suite's arithmetic and report, on synthetic reports (no services): percentiles, the lag verdict, the
medians per rate, the per-core figures, the Markdown table, the charts and the README embedding."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest
from PIL import Image

from braid.bench_ingest import freshness_by_rate, lag_grew, weighted_percentile
from braid.bench_report import README_END, README_START, build, embed, per_core

MACHINE = {"cores": 2, "cpu": "Test CPU", "memory_gib": 24, "platform": "Linux"}


@pytest.mark.parametrize("seed", range(5))
def test_weighted_percentile_equals_the_percentile_of_the_expanded_values(seed: int) -> None:
    rng = random.Random(seed)
    pairs = [(rng.uniform(0, 1000), rng.randint(1, 20)) for _ in range(rng.randint(1, 40))]
    expanded = sorted(value for value, weight in pairs for _ in range(weight))
    for fraction in (0.01, 0.5, 0.95, 0.99, 1.0):
        oracle = expanded[max(0, math.ceil(fraction * len(expanded)) - 1)]  # the nearest-rank definition
        assert weighted_percentile(pairs, fraction) == oracle


def test_weighted_percentile_of_nothing_is_none() -> None:
    assert weighted_percentile([], 0.5) is None
    assert weighted_percentile([(None, 3), (5.0, 0)], 0.5) is None


def test_lag_verdict_tells_a_sawtooth_from_a_growing_backlog() -> None:
    rate, trigger = 1000, 2.0
    times = [float(t) for t in range(0, 300, 2)]
    sawtooth = [(t, int((t % 10) * rate)) for t in times]  # a batch every 10 s: up to 10 s of events, then back
    assert not lag_grew(sawtooth, producing_until=300, rate=rate, trigger_seconds=trigger)
    growing = [(t, int((t % 10) * rate + t * 200)) for t in times]  # 20 % of the rate is left behind every second
    assert lag_grew(growing, producing_until=300, rate=rate, trigger_seconds=trigger)
    draining = [(t, lag) for t, lag in growing if t <= 200] + [(t, 0) for t in times if t > 200]
    assert lag_grew(draining, producing_until=200, rate=rate, trigger_seconds=trigger)  # only the producing part counts


def test_freshness_by_rate_is_the_median_of_the_sustained_runs() -> None:
    rng = random.Random(7)
    trials = []
    for rate in (1000, 2000, 4000):
        for _ in range(rng.randint(1, 4)):
            trials.append({"rate_target": rate, "sustained": rng.random() < 0.8,
                           "freshness_ms": {name: rng.uniform(1000, 9000) for name in ("p50", "p95", "p99")}})  # fmt: skip
    rows = {row["rate"]: row for row in freshness_by_rate(trials)}
    for rate in (1000, 2000, 4000):
        runs = [t for t in trials if t["rate_target"] == rate and t["sustained"]]
        if not runs:
            assert rate not in rows
            continue
        assert rows[rate]["runs"] == len(runs)
        for name in ("p50", "p95", "p99"):
            assert rows[rate][f"freshness_{name}_ms"] == round(statistics.median(r["freshness_ms"][name] for r in runs), 1)


def _reports() -> tuple[dict, dict, dict]:
    ingest = {
        "machine": MACHINE, "versions": {"pyspark": "4.1.3"}, "measured_at": "2026-11-25T00:00:00+00:00",
        "settings": {"producer_processes": 2, "topic_partitions": 6},
        "target": {"events_per_second": 83000, "freshness_ms": 5000},
        "sustained_rate": 7000, "gap": 11.9,
        "generator_alone": {"producer_processes": 2, "events": 600000, "generate_only_events_per_second": 51234, "to_kafka_events_per_second": 23456},
        "sustained_run": {"seconds": 300, "lag_max_events": 61234, "drain_seconds": 12.5, "freshness_ms": {"p50": 9100, "p95": 14200, "p99": 15800},
                          "peak_memory_mib": {"kafka": 700.4, "cassandra": 2900.0, "spark_driver_jvm": 1500.2, "speed_python": 420.0, "api": 150.3}},
        "freshness_by_rate": [{"rate": 1750, "runs": 3, "freshness_p50_ms": 6100.0, "freshness_p95_ms": 8000.0, "freshness_p99_ms": 8800.0},
                              {"rate": 7000, "runs": 1, "freshness_p50_ms": 9100.0, "freshness_p95_ms": 14200.0, "freshness_p99_ms": 15800.0}],
        "trials": [{"phase": "sustain", "rate_target": 7000, "sustained": True, "lag_series": [[0, 0], [2, 5000], [4, 100]]}],
    }  # fmt: skip
    batch = {
        "machine": {"cpus": 2, "memory_gib": 24, "platform": "Linux"},
        "results": [
            {"events": 10_000_000, "braid_spark_seconds": [36.0, 35.0, 40.0], "duckdb_seconds": [4.5, 4.6, 4.4],
             "braid_events_per_second": 277_778, "duckdb_events_per_second": 2_222_222, "braid_over_duckdb_throughput": 0.125, "same_answers": True},
            {"events": 1_000_000, "braid_spark_seconds": [8.0, 7.0, 9.0], "duckdb_seconds": [0.5, 0.4, 0.6],
             "braid_events_per_second": 125_000, "duckdb_events_per_second": 2_000_000, "braid_over_duckdb_throughput": 0.0625, "same_answers": True},
        ],
    }  # fmt: skip
    serving = {
        "machine": MACHINE, "seconds_per_run": 20,
        "results": [{"query": "series", "clients": c, "per_second": ps, "p50_ms": p50, "p99_ms": p99}
                    for c, ps, p50, p99 in ((1, 110.0, 9.0, 18.0), (8, 140.5, 59.0, 140.0))]
                   + [{"query": "top", "clients": 1, "per_second": 14.0, "p50_ms": 55.0, "p99_ms": 330.0}],
    }  # fmt: skip
    return ingest, batch, serving


def test_per_core_figures_divide_by_the_measuring_machine() -> None:
    ingest, batch, serving = _reports()
    figures = per_core(ingest, batch, serving)
    assert figures["ingest_events_per_second_per_core"] == 7000 / 2
    assert figures["batch_events_per_second_per_core"] == round(277_778 / 2)  # the largest dataset
    assert figures["serving_requests_per_second_per_core"] == round(140.5 / 2, 1)  # the best series throughput
    assert per_core(None, None, None) == {"event_bytes": 1000}


def test_build_writes_charts_table_summary_and_embeds_in_the_readme(tmp_path) -> None:
    ingest, batch, serving = _reports()
    for name, report in (("ingest", ingest), ("batch", batch), ("serving", serving)):
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{README_START}\nstale table\n{README_END}\nafter\n")
    built = build(tmp_path, readme)

    names = sorted(path.rsplit("/", 1)[1] for path in built["charts"])
    assert names == ["batch_growth.png", "ingest_freshness.png", "ingest_lag.png", "serving_latency.png"]
    for path in built["charts"]:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
    table = (tmp_path / "results.md").read_text()
    assert "| 1,750 | 3 | 6.1 s | 8.0 s | 8.8 s |" in table
    assert "**7,000 events/s**" in table and "11.9x short" in table
    assert "| 1,000,000 | 3 | 8.0 s | 125,000 |" in table  # median of 8, 7, 9; smallest size first
    assert "| 10,000,000 | 3 | 36.0 s | 277,778 | 4.5 s |" in table
    assert f"| series | 8 | {round(140.5)} | 59 ms | 140 ms |" in table  # whole numbers from 100 up
    assert "spark driver jvm 1,500" in table
    assert "2 processes with nothing consuming: 51,234 events/s generated, 23,456 events/s produced to Kafka" in table
    text = readme.read_text()
    assert "stale table" not in text and table in text
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{README_END}\nafter\n")
    assert json.loads((tmp_path / "summary.json").read_text())["ingest_events_per_second_per_core"] == 3500


def test_embed_without_markers_changes_nothing(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    assert embed(readme, "table\n") is False
    assert readme.read_text() == "no markers here\n"


def test_build_without_reports_says_so(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no benchmark results"):
        build(tmp_path)
