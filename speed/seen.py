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
import pyarrow as pa


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


class RecentIds:
    """The event ids themselves, with their hashes, of the micro-batches the archive has not committed to Delta yet
    (and of the last `keep_ms` of batches in any case): an index hit is confirmed here without reading Delta, which
    lags the view path by design (`speed/archive.py`) and would hold a fresh batch back."""

    def __init__(self, keep_ms: int) -> None:
        self.keep_ms = keep_ms
        self._batches: dict[tuple[int, str], tuple[int, np.ndarray, pa.Array]] = {}  # (batch, type) -> (ms, hashes, ids)

    def add(self, batch_id: int, event_type: str, timestamp_ms: int, hashes: np.ndarray, ids: pa.Array) -> None:
        self._batches[(batch_id, event_type)] = (timestamp_ms, hashes, ids)

    def forget(self, archived_through: int, now_ms: int) -> None:
        """Drop batches Delta holds that are older than `keep_ms`; every batch after `archived_through` stays."""
        for key in [k for k, (at, _, _) in self._batches.items() if k[0] <= archived_through and at < now_ms - self.keep_ms]:
            del self._batches[key]

    def clear(self) -> None:
        self._batches = {}

    def ids_with(self, event_type: str, hashes: np.ndarray, before_batch: int) -> set[str]:
        """The ids of `event_type` in batches before `before_batch` whose hash is among `hashes`."""
        found: set[str] = set()
        for (batch_id, held_type), (_, held, ids) in self._batches.items():
            if held_type == event_type and batch_id < before_batch:
                hit = np.isin(held, hashes)
                if hit.any():
                    found.update(ids.filter(pa.array(hit)).to_pylist())
        return found

    def size(self) -> int:
        return sum(len(held) for _, held, _ in self._batches.values())
