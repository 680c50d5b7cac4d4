"""The merge of the contract, rule 4, on literal rows: each metric's own combine, provenance, roll-up and ranking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from serving.merge import Cell, combine, merge_rows, roll_up, top

AGGREGATES = {"n": "count", "total": "sum", "low": "min", "high": "max"}
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 24, 10, 1, tzinfo=UTC)
T5 = datetime(2026, 11, 24, 10, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("aggregate", "left", "right", "expected"),
    [
        ("count", 3, 4, 7), ("sum", 2.5, 1.0, 3.5), ("min", 3, 4, 3), ("max", 3, 4, 4),
        ("min", None, 4, 4), ("max", 5, None, 5), ("sum", None, None, None),
    ],
)  # fmt: skip
def test_each_metric_combines_its_own_way(aggregate: str, left, right, expected) -> None:
    assert combine(aggregate, left, right) == expected


def test_batch_and_speed_rows_merge_per_window_with_their_provenance() -> None:
    batch = [(T0, {"n": 2, "total": 10, "low": 4, "high": 6}), (T1, {"n": 1, "total": 5, "low": 5, "high": 5})]
    speed = [
        (T1, {"n": 1, "total": 9, "low": 9, "high": 9}),  # a late event after the cutoff, in an old window
        (T5, {"n": 1, "total": 2, "low": 2, "high": 2}),
        (T5, {"n": 2, "total": 8, "low": 3, "high": 5}),  # the same window from a second micro-batch
    ]
    cells = merge_rows(AGGREGATES, batch, speed)
    assert cells == {
        T0: Cell({"n": 2, "total": 10, "low": 4, "high": 6}, "batch"),
        T1: Cell({"n": 2, "total": 14, "low": 5, "high": 9}, "both"),
        T5: Cell({"n": 3, "total": 10, "low": 2, "high": 5}, "speed"),
    }


def test_roll_up_to_a_coarser_grain_combines_windows_and_provenance() -> None:
    cells = {
        T0: Cell({"n": 2, "total": 10, "low": 4, "high": 6}, "batch"),
        T1: Cell({"n": 1, "total": 1, "low": 1, "high": 1}, "speed"),
        T5: Cell({"n": 3, "total": 10, "low": 2, "high": 5}, "speed"),
    }
    assert roll_up(cells, 300, AGGREGATES) == {
        T0: Cell({"n": 3, "total": 11, "low": 1, "high": 6}, "both"),
        T5: Cell({"n": 3, "total": 10, "low": 2, "high": 5}, "speed"),
    }


def test_top_ranks_by_the_metric_then_by_key() -> None:
    cells = {key: Cell({"n": n}, "batch") for key, n in {"c": 5, "a": 7, "b": 5, "d": 1}.items()}
    assert [key for key, _ in top(cells, "n", 3)] == ["a", "b", "c"]
    assert top(cells, "missing", 3) == []
