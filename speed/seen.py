"""Which event ids earlier micro-batches already brought: the speed layer's de-duplication index, kept in the driver.

A view counts an event once: its first copy in the micro-batch that first brought it, none from a later batch within
the de-duplication horizon. Reading the horizon's event ids back from the Delta master dataset every batch made each
batch scan (and de-duplicate) every id of the last hour: a cost that grew with the rate times the horizon. Instead
the driver keeps, per event type and handoff bucket, the sorted 64-bit hashes (Spark's `xxhash64`) of the ids each
batch committed: 8 bytes an event, a binary search per new event.

A hash is only a candidate: a batch's events whose hash the index holds are checked against the ids themselves, read
from Delta in just the buckets that held the hash (the files of other buckets are skipped by their statistics). So
a hash collision costs a small read, never a dropped event.

The index is complete for the batches before `next_batch` only; when a batch arrives with another id (the job
started, or the query restarted and replays a batch), it is rebuilt from the master dataset with one scan of the
horizon, exactly the rows the per-batch read used to see.
"""

from __future__ import annotations

import numpy as np


class SeenIds:
    def __init__(self, horizon_buckets: int) -> None:
        self.horizon_buckets = horizon_buckets
        self.next_batch: int | None = None
        self._hashes: dict[str, dict[int, np.ndarray]] = {}  # event type -> handoff bucket -> sorted unique hashes

    def reset(self, batch_id: int) -> None:
        """Forget everything; the caller loads what the batches before `batch_id` committed."""
        self._hashes = {}
        self.next_batch = batch_id

    def add(self, event_type: str, buckets: np.ndarray, hashes: np.ndarray) -> None:
        """Hashes of committed copies, each with its handoff bucket."""
        by_bucket = self._hashes.setdefault(event_type, {})
        order = np.argsort(buckets, kind="stable")
        buckets, hashes = buckets[order], hashes[order]
        values, starts = np.unique(buckets, return_index=True)
        for bucket, part in zip(values.tolist(), np.split(hashes, starts[1:])):
            held = by_bucket.get(bucket)
            by_bucket[bucket] = np.unique(part if held is None else np.concatenate((held, part)))

    def committed(self, batch_id: int, bucket: int) -> None:
        """Batch `batch_id` is in the index; forget the buckets that fell out of the horizon of `bucket`."""
        self.next_batch = batch_id + 1
        oldest = bucket - self.horizon_buckets
        for by_bucket in self._hashes.values():
            for old in [b for b in by_bucket if b < oldest]:
                del by_bucket[old]

    def skipped(self, batch_id: int) -> None:
        """Batch `batch_id` committed nothing: the index stays complete for the next one."""
        if self.next_batch == batch_id:
            self.next_batch = batch_id + 1

    def held(self, event_type: str, bucket: int, hashes: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """The hashes among `hashes` that a batch within the horizon of `bucket` brought, and the buckets holding them."""
        found = np.zeros(len(hashes), dtype=bool)
        buckets = []
        for held_bucket, held in self._hashes.get(event_type, {}).items():
            if held_bucket < bucket - self.horizon_buckets or not len(held):
                continue
            at = np.searchsorted(held, hashes).clip(max=len(held) - 1)
            hit = held[at] == hashes
            if hit.any():
                found |= hit
                buckets.append(held_bucket)
        return np.unique(hashes[found]), sorted(buckets)

    def size(self) -> int:
        return sum(len(held) for by_bucket in self._hashes.values() for held in by_bucket.values())
