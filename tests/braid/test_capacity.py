"""The capacity arithmetic against rows worked out by hand, and its command's behaviour without a benchmark summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from braid.capacity import Assumptions, CapacityRow, PerCore, capacity, main, per_core_from_summary, render_markdown

TODAY = PerCore(ingest_events_per_second=3_000, batch_events_per_second=142_000, serving_requests_per_second=70, event_bytes=1_000)

# Worked on paper from TODAY and the default assumptions (headroom 1.5, Kafka RF 3, 200 MB/s written per broker,
# 10 MB/s per partition, an hour of events recomputed within 15 minutes, 0.01 queries per event, 8-core Cassandra
# nodes, RF 3). E.g. 83k: speed 83,000 x 1.5 / 3,000 = 41.5 -> 42 cores; brokers 83 MB/s x 3 x 1.5 / 200 = 1.87 -> 3
# (the minimum); partitions max(42, 83 x 1.5 / 10 = 12.45 -> 13) = 42, a multiple of 3; batch 83,000 x 3,600 x 1.5 /
# (142,000 x 900) = 3.51 -> 4; serving 830 x 1.5 / 70 = 17.8 -> 18 cores, 18 / 8 -> 3 nodes; lake read 298.8 M events
# x 1 KB / 900 s = 332 MB/s; 83 MB/s x 86,400 s = 7.17 TB a day.
HAND_WORKED = {
    83_000: CapacityRow(83_000, 83.0, 42, 42, 3, 4, 18, 3, 83.0, 332.0, 7.1712),
    250_000: CapacityRow(250_000, 250.0, 125, 126, 6, 11, 54, 7, 250.0, 1_000.0, 21.6),
    500_000: CapacityRow(500_000, 500.0, 250, 252, 12, 22, 108, 14, 500.0, 2_000.0, 43.2),
    1_000_000: CapacityRow(1_000_000, 1_000.0, 500, 506, 23, 43, 215, 27, 1_000.0, 4_000.0, 86.4),
}


@pytest.mark.parametrize("rate", sorted(HAND_WORKED))
def test_rows_equal_the_hand_worked_figures(rate: int) -> None:
    (row,) = capacity(TODAY, (rate,))
    expected = HAND_WORKED[rate]
    for field in CapacityRow.__dataclass_fields__:
        assert getattr(row, field) == pytest.approx(getattr(expected, field)), field


def test_the_default_targets_are_the_four_rates() -> None:
    assert [row.events_per_second for row in capacity(TODAY)] == [83_000, 250_000, 500_000, 1_000_000]


def test_assumptions_change_the_answer_the_way_they_should() -> None:
    base = capacity(TODAY, (83_000,))[0]
    no_headroom = capacity(TODAY, (83_000,), Assumptions(headroom=1.0))[0]
    assert no_headroom.speed_cores == 28  # 83,000 / 3,000 = 27.7 -> 28
    assert no_headroom.speed_cores < base.speed_cores
    faster = capacity(PerCore(6_000, 142_000, 70, 1_000), (83_000,))[0]
    assert faster.speed_cores == 21  # twice the per-core rate: 41.5 / 2 = 20.75 -> 21
    bigger_partitions = capacity(TODAY, (1_000_000,), Assumptions(partition_bytes_per_second=1e6))[0]
    assert bigger_partitions.kafka_partitions == 1_518  # 1,500 MB/s / 1 MB/s = 1,500 -> next multiple of 23 brokers


def test_an_exact_product_does_not_round_up_to_one_more() -> None:
    # 9,000 x 1.0 / 3,000 is exactly 3 on paper; a float error must not ask for a fourth core
    assert capacity(TODAY, (9_000,), Assumptions(headroom=1.0))[0].speed_cores == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PerCore(0, 1, 1, 1), "ingest_events_per_second must be a positive number, got 0"),
        (lambda: Assumptions(headroom=0.5), "headroom must be 1 or more, got 0.5"),
        (lambda: capacity(TODAY, (-5,)), "a target rate must be positive, got -5"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_render_markdown_has_a_header_and_one_line_per_row() -> None:
    lines = render_markdown(capacity(TODAY)).splitlines()
    assert lines[0].startswith("| events/s | ingress MB/s | speed cores |")
    assert len(lines) == 2 + 4
    assert lines[2].split(" | ")[:4] == ["| 83,000", "83", "42", "42"]
    assert lines[-1].split(" | ")[:5] == ["| 1,000,000", "1,000", "500", "506", "23"]


def test_main_without_a_summary_fails_with_one_line(tmp_path: Path, capsys) -> None:
    assert main(["--summary", str(tmp_path / "summary.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "summary.json not found; run the benchmark first" in err


def test_main_reads_the_summary_and_prints_the_table(tmp_path: Path, capsys) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({
        "machine": "2 cores, 24 GiB", "ingest_events_per_second_per_core": 3000, "batch_events_per_second_per_core": 142000,
        "serving_requests_per_second_per_core": 70, "event_bytes": 1000,
    }))  # fmt: skip
    assert main(["--summary", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "Per core on 2 cores, 24 GiB: ingest 3,000 events/s" in out
    assert render_markdown(capacity(TODAY)) in out


def test_a_summary_missing_a_figure_is_named(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"ingest_events_per_second_per_core": 3000, "event_bytes": 1000}))
    with pytest.raises(ValueError, match="lacks a number for batch_events_per_second_per_core, serving_requests_per_second_per_core"):
        per_core_from_summary(summary)


def test_the_deployment_readme_shows_the_table_of_the_committed_benchmark() -> None:
    root = Path(__file__).resolve().parents[2]
    measured, _machine = per_core_from_summary(root / "bench" / "summary.json")
    assert render_markdown(capacity(measured)) in (root / "docker" / "README.md").read_text()
