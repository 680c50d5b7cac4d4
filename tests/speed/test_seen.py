"""The speed layer's de-duplication index (speed/seen.py) against a plain-Python record of every committed copy."""

from __future__ import annotations

import random

import numpy as np

from speed.seen import SeenIds


def test_held_finds_exactly_the_hashes_earlier_batches_brought_within_the_horizon() -> None:
    rng = random.Random(7)
    horizon = 3
    seen = SeenIds(horizon)
    seen.reset(0)
    committed: list[tuple[str, int, int]] = []  # (event type, bucket, hash): the oracle
    pool = [rng.randrange(-(2**63), 2**63) for _ in range(400)]  # a small pool, so batches repeat each other's hashes
    for batch_id in range(40):
        bucket = batch_id // 3  # three batches a bucket, buckets only move forward
        for event_type in ("payment", "page_view"):
            hashes = np.array([rng.choice(pool) for _ in range(rng.randrange(0, 60))], dtype=np.int64)
            held, buckets = seen.held(event_type, bucket, hashes)
            window = [(b, h) for t, b, h in committed if t == event_type and b >= bucket - horizon]
            expected = {h for _, h in window} & set(hashes.tolist())
            assert set(held.tolist()) == expected and len(held) == len(expected)
            assert buckets == sorted({b for b, h in window if h in expected})
            seen.add(event_type, np.full(len(hashes), bucket, dtype=np.int64), hashes)
            committed += [(event_type, bucket, h) for h in hashes.tolist()]
        seen.committed(batch_id, bucket)
        assert seen.next_batch == batch_id + 1
    # what fell out of the horizon is forgotten, not just ignored
    newest = 39 // 3
    assert seen.size() == len({(t, b, h) for t, b, h in committed if b >= newest - horizon})


def test_one_add_may_carry_several_buckets_and_reset_forgets_everything() -> None:
    seen = SeenIds(10)
    seen.reset(5)
    seen.add("payment", np.array([4, 2, 4, 2], dtype=np.int64), np.array([9, 8, 7, 8], dtype=np.int64))
    held, buckets = seen.held("payment", 4, np.array([8, 7, 1], dtype=np.int64))
    assert held.tolist() == [7, 8] and buckets == [2, 4]
    assert seen.held("page_view", 4, np.array([8], dtype=np.int64))[0].tolist() == []
    assert seen.size() == 3
    seen.reset(9)
    assert seen.size() == 0 and seen.next_batch == 9


def test_an_empty_batch_keeps_the_index_complete_for_the_next_one_only() -> None:
    seen = SeenIds(10)
    seen.reset(3)
    seen.skipped(3)
    assert seen.next_batch == 4
    seen.skipped(7)  # not the batch the index is complete up to: nothing changes
    assert seen.next_batch == 4
