"""A micro-batch's facts, from one small columnar collect of its classified records: the figures it reports and which
copies of its events the views count. Pure functions over Arrow and numpy; `speed/job.py` does the I/O.

Collecting a few small columns (reason, type, Kafka coordinates, times, the id and its hash) costs one Spark stage
with no shuffle; deciding here what Spark's aggregates and window functions decided before saves the micro-batch two
jobs and a shuffle, which on two cores was most of a small batch's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Figures:
    rows: int
    by_reason: dict[str, int]
    valid_by_type: dict[str, int]
    max_offsets: dict[str, int]  # Kafka partition -> the newest offset the batch read
    bucket: int
    batch_ms: int
    produced_ms: tuple[float, float, float]  # produce times at the 50th, 5th and 1st percentile
    oldest_ms: int


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    grouped = table.group_by(column).aggregate([([], "count_all")])
    return {str(key): int(count) for key, count in zip(grouped.column(column).to_pylist(), grouped.column("count_all").to_pylist())}


def figures(facts: pa.Table) -> Figures | None:
    """None for a batch without records."""
    if facts.num_rows == 0:
        return None
    rejected = pc.is_valid(facts.column("reason"))
    by_partition = facts.group_by("partition").aggregate([("offset", "max")])
    produced = facts.column("produced_ms").to_numpy()
    return Figures(
        rows=facts.num_rows,
        by_reason=_counts(facts.filter(rejected), "reason"),
        valid_by_type=_counts(facts.filter(pc.invert(rejected)), "event_type"),
        max_offsets={str(p): int(o) for p, o in zip(by_partition.column("partition").to_pylist(), by_partition.column("offset_max").to_pylist())},
        bucket=int(pc.min(facts.column("handoff_bucket")).as_py()),
        batch_ms=int(pc.min(facts.column("batch_ms")).as_py()),
        produced_ms=tuple(float(v) for v in np.percentile(produced, [50, 5, 1], method="lower")),  # type: ignore[arg-type]
        oldest_ms=int(produced.min()),
    )


def valid_of_type(facts: pa.Table, event_type: str) -> pa.Table:
    return facts.filter(pc.and_(pc.is_null(facts.column("reason")), pc.equal(facts.column("event_type"), event_type)))


def later_copies(valid: pa.Table) -> np.ndarray:
    """Mask of the copies that are not the first of their event id within the batch (by Kafka partition, offset)."""
    if valid.num_rows < 2:
        return np.zeros(valid.num_rows, dtype=bool)
    order = pc.sort_indices(valid, sort_keys=[("event_id", "ascending"), ("partition", "ascending"), ("offset", "ascending")])
    ids = valid.column("event_id").take(order)
    repeat = np.zeros(valid.num_rows, dtype=bool)
    repeat[1:] = pc.equal(ids.slice(1), ids.slice(0, valid.num_rows - 1)).to_numpy(zero_copy_only=False)
    mask = np.zeros(valid.num_rows, dtype=bool)
    mask[order.to_numpy()] = repeat
    return mask


def copies_of(valid: pa.Table, event_ids: set[str]) -> np.ndarray:
    """Mask of the copies whose event id is among `event_ids`."""
    if not event_ids:
        return np.zeros(valid.num_rows, dtype=bool)
    return pc.is_in(valid.column("event_id"), value_set=pa.array(sorted(event_ids), pa.string())).to_numpy(zero_copy_only=False)


def positions(records: pa.Table) -> np.ndarray:
    """Each record's Kafka position as one int64 (partition in the high bits): a set of copies to leave out."""
    return (records.column("partition").to_numpy().astype(np.int64) << 40) | records.column("offset").to_numpy().astype(np.int64)


def view_cells(records: pa.Table, repeated: np.ndarray | None) -> pa.Table:
    """The view cells of the records (a list column `cells`, null for a rejected record) as one table with each cell's
    handoff bucket, without the null cells (a view's filter rejected the event) and those of the copies at `repeated`
    positions."""
    lists = records.column("cells").combine_chunks()
    parents = pc.list_parent_indices(lists).to_numpy()
    cells = pc.list_flatten(lists)
    keep = pc.is_valid(cells).to_numpy(zero_copy_only=False)
    if repeated is not None and len(repeated):
        keep &= ~np.isin(positions(records), repeated)[parents]
    flat = cells.flatten()
    table = pa.table({field.name: flat[index] for index, field in enumerate(cells.type)})
    table = table.append_column("handoff_bucket", records.column("handoff_bucket").combine_chunks().take(pa.array(parents)))
    return table.filter(pa.array(keep))
