"""The view path's decisions in the driver (speed/facts.py, braid.view_compiler.aggregate_cells, speed/seen.RecentIds)
against plain-Python accounts of random micro-batches."""

from __future__ import annotations

import random
import zlib
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pytest

from braid.view_compiler import aggregate_cells
from speed.facts import copies_of, figures, later_copies, positions, valid_of_type, view_cells
from speed.seen import RecentIds

TYPES = ("page_view", "payment")
REASONS = ("unparseable", "missing_field", "absurd_time")


def _batch(rng: random.Random, rows: int) -> pa.Table:
    """Records of one micro-batch: some rejected, the rest valid with ids drawn from a small pool (so repeated)."""
    records = []
    offsets = Counter()
    for _ in range(rows):
        partition = rng.randrange(3)
        offset = offsets[partition]
        offsets[partition] += 1
        rejected = rng.random() < 0.1
        event_id = None if rejected else f"e{rng.randrange(rows // 2 + 1)}"
        records.append({
            "reason": rng.choice(REASONS) if rejected else None,
            "event_type": None if rejected else TYPES[zlib.crc32(event_id.encode()) % 2],
            "partition": partition, "offset": 1000 + offset, "handoff_bucket": 7, "event_id": event_id,
            "produced_ms": 1_000_000 + rng.randrange(5000), "batch_ms": 2_000_000,
            "hash": None if rejected else zlib.crc32(event_id.encode()),
        })  # fmt: skip
    rng.shuffle(records)
    schema = pa.schema([
        ("reason", pa.string()), ("event_type", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
        ("handoff_bucket", pa.int64()), ("event_id", pa.string()), ("produced_ms", pa.int64()), ("batch_ms", pa.int64()),
        ("hash", pa.int64()),
    ])  # fmt: skip
    return pa.Table.from_pylist(records, schema)


@pytest.mark.parametrize("seed", range(8))
def test_figures_and_first_copies_match_a_plain_account(seed: int) -> None:
    rng = random.Random(seed)
    table = _batch(rng, rng.randrange(1, 400))
    rows = table.to_pylist()
    got = figures(table)
    assert got.rows == len(rows)
    assert got.by_reason == dict(Counter(r["reason"] for r in rows if r["reason"]))
    assert got.valid_by_type == dict(Counter(r["event_type"] for r in rows if not r["reason"]))
    newest = defaultdict(lambda: -1)
    for r in rows:
        newest[str(r["partition"])] = max(newest[str(r["partition"])], r["offset"])
    assert got.max_offsets == dict(newest)
    assert got.oldest_ms == min(r["produced_ms"] for r in rows)
    assert got.produced_ms[0] <= np.median([r["produced_ms"] for r in rows]) + 1 and got.produced_ms[2] <= got.produced_ms[1] <= got.produced_ms[0]

    for event_type in TYPES:
        valid = valid_of_type(table, event_type)
        mine = [r for r in rows if not r["reason"] and r["event_type"] == event_type]
        assert valid.num_rows == len(mine)
        first = {}
        for r in sorted(mine, key=lambda r: (r["partition"], r["offset"])):
            first.setdefault(r["event_id"], (r["partition"], r["offset"]))
        expected = [(r["partition"], r["offset"]) != first[r["event_id"]] for r in valid.to_pylist()]
        assert later_copies(valid).tolist() == expected
        chosen = {r["event_id"] for r in mine[: len(mine) // 3]}
        assert copies_of(valid, chosen).tolist() == [r["event_id"] in chosen for r in valid.to_pylist()]


def test_view_cells_leave_out_null_cells_and_the_repeated_copies() -> None:
    cell = pa.struct([("view", pa.string()), ("key", pa.string()), ("window_ms", pa.int64()), ("metric", pa.string()),
                      ("aggregate", pa.string()), ("int_in", pa.int64()), ("float_in", pa.float64())])  # fmt: skip

    def c(view: str, value: int) -> dict:
        return {"view": view, "key": "k", "window_ms": 0, "metric": "m", "aggregate": "sum", "int_in": value, "float_in": None}

    records = pa.table({
        "partition": pa.array([0, 0, 1, 1], pa.int32()), "offset": pa.array([5, 6, 5, 9], pa.int64()),
        "handoff_bucket": pa.array([3, 3, 3, 4], pa.int64()),
        "cells": pa.array([[c("a", 1), None], None, [c("a", 2), c("b", 3)], [c("b", 4)]], pa.list_(cell)),
    })  # fmt: skip
    everything = view_cells(records, None)
    assert sorted(zip(everything.column("view").to_pylist(), everything.column("int_in").to_pylist(),
                      everything.column("handoff_bucket").to_pylist())) == [("a", 1, 3), ("a", 2, 3), ("b", 3, 3), ("b", 4, 4)]  # fmt: skip
    repeated = positions(records.slice(2, 1))  # partition 1, offset 5
    assert positions(records).tolist()[2] == (1 << 40) | 5
    kept = view_cells(records, repeated)
    assert sorted(kept.column("int_in").to_pylist()) == [1, 4]


@pytest.mark.parametrize("seed", range(6))
def test_aggregate_cells_matches_a_plain_aggregation(seed: int) -> None:
    rng = random.Random(seed)
    metrics = {"n": "count", "s": "sum", "lo": "min", "hi": "max", "fs": "sum", "flo": "min"}
    rows = []
    for _ in range(rng.randrange(1, 300)):
        metric = rng.choice(list(metrics))
        is_float = metric.startswith("f")
        value = None if rng.random() < 0.2 else rng.randrange(-50, 50)
        rows.append({
            "handoff_bucket": rng.randrange(2), "view": rng.choice(("v1", "v2")), "key": rng.choice(("a", "b", "c")),
            "window_ms": rng.randrange(3) * 60_000, "metric": metric, "aggregate": metrics[metric],
            "int_in": 1 if metrics[metric] == "count" else (None if is_float else value),
            "float_in": None if not is_float or value is None else value / 4,
        })  # fmt: skip
    schema = pa.schema([("handoff_bucket", pa.int64()), ("view", pa.string()), ("key", pa.string()), ("window_ms", pa.int64()),
                        ("metric", pa.string()), ("aggregate", pa.string()), ("int_in", pa.int64()), ("float_in", pa.float64())])  # fmt: skip
    got = {
        (r["handoff_bucket"], r["view"], r["key"], r["window_ms"], r["metric"]): (r["int_value"], r["float_value"])
        for r in aggregate_cells(pa.Table.from_pylist(rows, schema), ["handoff_bucket"]).to_pylist()
    }
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["handoff_bucket"], r["view"], r["key"], r["window_ms"], r["metric"])].append(r)
    assert set(got) == set(groups)
    for group, members in groups.items():
        aggregate, is_float = metrics[group[-1]], group[-1].startswith("f")
        values = [m["float_in" if is_float else "int_in"] for m in members if m["float_in" if is_float else "int_in"] is not None]
        expected = {
            "count": len(members), "sum": sum(values) if values else 0,
            "min": min(values) if values else None, "max": max(values) if values else None,
        }[aggregate]  # fmt: skip
        int_value, float_value = got[group]
        if is_float:
            assert float_value == pytest.approx(expected) if expected is not None else float_value is None, (group, got[group])
        else:
            assert int_value == expected, (group, got[group])


def test_recent_ids_keep_every_unarchived_batch_and_the_last_minute() -> None:
    recent = RecentIds(keep_ms=60_000)
    for batch in range(5):
        ids = pa.array([f"e{batch}", "shared"])
        recent.add(batch, "page_view", 1_000 * batch, np.array([batch, 99], dtype=np.int64), ids)
    recent.add(5, "payment", 5_000, np.array([99], dtype=np.int64), pa.array(["other"]))
    assert recent.ids_with("page_view", np.array([2, 99]), before_batch=3) == {"e2", "shared"}
    assert recent.ids_with("page_view", np.array([4]), before_batch=4) == set()  # only earlier batches
    assert recent.ids_with("payment", np.array([99]), before_batch=9) == {"other"}
    recent.forget(archived_through=2, now_ms=1_000 + 60_001)  # batches 0 and 1 archived and older than a minute
    assert recent.ids_with("page_view", np.array([0, 1, 2]), before_batch=9) == {"e2"}
    assert recent.size() == 3 * 2 + 1
