"""How big a Braid deployment must be for a given event rate, worked out from the benchmark's per-core figures.

    python -m braid.capacity                       # the table for 83k, 250k, 500k and 1M events/s
    python -m braid.capacity --summary other.json  # from another benchmark summary

The arithmetic is a pure function of measured figures (`PerCore`, from `bench/summary.json`) and stated assumptions
(`Assumptions`: headroom, replication, what one broker, partition or node is taken to sustain); every row is derived
from those two and the target rate, nothing else. docker/README.md explains each assumption and how to read the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

TARGET_RATES = (83_000, 250_000, 500_000, 1_000_000)
SUMMARY = Path("bench/summary.json")
MB = 1_000_000  # decimal megabytes, as network and disk throughput are quoted


@dataclass(frozen=True)
class PerCore:
    """What one core sustains, measured by the benchmark on the development machine."""

    ingest_events_per_second: float  # the speed layer: Kafka -> validate -> Delta + speed views
    batch_events_per_second: float  # the batch layer's exact recompute from a Delta snapshot
    serving_requests_per_second: float  # merged series queries through the API, Cassandra included
    event_bytes: float

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"capacity: {name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Assumptions:
    """What the measurements do not tell: each one is stated in docker/README.md."""

    headroom: float = 1.5  # provision 1.5x the steady need: catch-up after an outage, skew, GC, a node down
    kafka_replication: int = 3
    kafka_min_brokers: int = 3
    broker_write_bytes_per_second: float = 200 * MB  # disk writes one broker sustains (NVMe, 10 GbE), replicas included
    partition_bytes_per_second: float = 10 * MB  # one partition's produce rate, the usual comfortable ceiling
    batch_interval_hours: float = 1.0  # an hourly batch run covers an hour of new events...
    batch_deadline_minutes: float = 15.0  # ...and must finish within this window
    queries_per_event: float = 0.01  # merged queries per ingested event (dashboards, API clients)
    cassandra_replication: int = 3
    cassandra_node_cores: int = 8
    lake_bytes_ratio: float = 1.0  # bytes written to the lake per raw event byte (1.0 is an upper bound: Parquet compresses)

    def __post_init__(self) -> None:
        if self.headroom < 1:
            raise ValueError(f"capacity: headroom must be 1 or more, got {self.headroom!r}")


@dataclass(frozen=True)
class CapacityRow:
    events_per_second: int
    ingress_mb_per_second: float
    speed_cores: int
    kafka_partitions: int
    kafka_brokers: int
    batch_cores: int
    serving_cores: int
    cassandra_nodes: int
    lake_write_mb_per_second: float
    lake_batch_read_mb_per_second: float
    lake_tb_per_day: float


def capacity(per_core: PerCore, rates: tuple[int, ...] = TARGET_RATES, assumptions: Assumptions = Assumptions()) -> list[CapacityRow]:
    return [_row(rate, per_core, assumptions) for rate in rates]


def _row(rate: int, per_core: PerCore, a: Assumptions) -> CapacityRow:
    if rate <= 0:
        raise ValueError(f"capacity: a target rate must be positive, got {rate!r}")
    ingress = rate * per_core.event_bytes  # bytes/s
    speed_cores = _up(rate * a.headroom / per_core.ingest_events_per_second)
    brokers = max(a.kafka_min_brokers, _up(ingress * a.kafka_replication * a.headroom / a.broker_write_bytes_per_second))
    # One Spark task reads one Kafka partition: fewer partitions than speed cores would leave cores idle. Whole
    # multiples of the broker count keep the leaders even.
    partitions = max(speed_cores, _up(ingress * a.headroom / a.partition_bytes_per_second))
    partitions = _up(partitions / brokers) * brokers
    batch_events = rate * a.batch_interval_hours * 3600
    deadline = a.batch_deadline_minutes * 60
    batch_cores = _up(batch_events * a.headroom / (per_core.batch_events_per_second * deadline))
    serving_cores = _up(rate * a.queries_per_event * a.headroom / per_core.serving_requests_per_second)
    cassandra_nodes = max(a.cassandra_replication, _up(serving_cores / a.cassandra_node_cores))
    return CapacityRow(
        events_per_second=rate,
        ingress_mb_per_second=ingress / MB,
        speed_cores=speed_cores,
        kafka_partitions=partitions,
        kafka_brokers=brokers,
        batch_cores=batch_cores,
        serving_cores=serving_cores,
        cassandra_nodes=cassandra_nodes,
        lake_write_mb_per_second=ingress * a.lake_bytes_ratio / MB,
        lake_batch_read_mb_per_second=batch_events * per_core.event_bytes * a.lake_bytes_ratio / deadline / MB,
        lake_tb_per_day=ingress * a.lake_bytes_ratio * 86_400 / MB**2,
    )


def _up(value: float) -> int:
    # Whole machines, partitions and cores round up; the tolerance keeps a float product such as 3.0000000000000004
    # (exactly 3 on paper) from asking for a fourth.
    return math.ceil(value - 1e-9)


_COLUMNS = (
    ("events/s", lambda r: f"{r.events_per_second:,}"),
    ("ingress MB/s", lambda r: f"{r.ingress_mb_per_second:,.0f}"),
    ("speed cores", lambda r: f"{r.speed_cores:,}"),
    ("Kafka partitions", lambda r: f"{r.kafka_partitions:,}"),
    ("Kafka brokers", lambda r: f"{r.kafka_brokers:,}"),
    ("batch cores", lambda r: f"{r.batch_cores:,}"),
    ("serving cores", lambda r: f"{r.serving_cores:,}"),
    ("Cassandra nodes", lambda r: f"{r.cassandra_nodes:,}"),
    ("lake write MB/s", lambda r: f"{r.lake_write_mb_per_second:,.0f}"),
    ("lake read MB/s (batch)", lambda r: f"{r.lake_batch_read_mb_per_second:,.0f}"),
    ("lake TB/day", lambda r: f"{r.lake_tb_per_day:,.1f}"),
)


def render_markdown(rows: list[CapacityRow]) -> str:
    lines = ["| " + " | ".join(name for name, _ in _COLUMNS) + " |", "|" + "---:|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(cell(row) for _, cell in _COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def per_core_from_summary(path: Path) -> tuple[PerCore, str]:
    """The figures of a benchmark summary and the machine they were measured on; a clear error if absent or partial."""
    if not path.is_file():
        raise ValueError(f"capacity: {path} not found; run the benchmark first (it writes the per-core figures there)")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"capacity: {path} is not JSON ({error})") from None
    keys = ("ingest_events_per_second_per_core", "batch_events_per_second_per_core", "serving_requests_per_second_per_core", "event_bytes")
    missing = [key for key in keys if not isinstance(summary.get(key), int | float)]
    if missing:
        raise ValueError(f"capacity: {path} lacks a number for {', '.join(missing)}")
    figures = PerCore(*(float(summary[key]) for key in keys))
    machine = summary.get("machine", "unknown machine")
    if isinstance(machine, dict):  # as `braid bench report` writes it
        machine = f"{machine.get('cores', '?')} cores ({machine.get('cpu') or machine.get('platform', '')}), {machine.get('memory_gib', '?')} GiB"
    return figures, str(machine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m braid.capacity", description="Capacity table from the benchmark's per-core figures")
    parser.add_argument("--summary", type=Path, default=SUMMARY, help=f"the benchmark summary (default {SUMMARY})")
    args = parser.parse_args(argv)
    try:
        figures, machine = per_core_from_summary(args.summary)
    except ValueError as error:
        print(f"braid: {error}", file=sys.stderr)
        return 2
    print(
        f"Per core on {machine}: ingest {figures.ingest_events_per_second:,.0f} events/s, batch "
        f"{figures.batch_events_per_second:,.0f} events/s, serving {figures.serving_requests_per_second:,.0f} requests/s; "
        f"{figures.event_bytes:,.0f}-byte events. Assumptions: {Assumptions()}\n"
    )
    print(render_markdown(capacity(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
