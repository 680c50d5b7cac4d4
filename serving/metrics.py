"""Pipeline figures for the dashboard and `/metrics`, and the API's own latency, in Prometheus' text format."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from serving.store import ServingStore

RECENT_BATCHES = 100  # quarantine counts and rates are summed over this many newest micro-batches


def pipeline_status(store: ServingStore, bucket_seconds: int, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> dict[str, Any]:
    now = clock()
    pointer = store.pointer()
    progress = store.progress()
    batches = store.recent_speed_batches(RECENT_BATCHES)
    newest = batches[0] if batches else None
    latest = store.latest_batch_version()
    quarantine: dict[str, int] = {}
    for batch in batches:
        for reason, count in (batch.quarantine_by_reason or {}).items():
            quarantine[reason] = quarantine.get(reason, 0) + count
    covers = datetime.fromtimestamp((pointer.cutoff + 1) * bucket_seconds, UTC) if pointer else None
    return {
        "now": now,
        "batch": {
            "version": pointer.version if pointer else None,
            "cutoff": pointer.cutoff if pointer else None,
            "covers_until": covers,
            "cutoff_age_seconds": round((now - covers).total_seconds(), 3) if covers else None,
            "published_at": pointer.published_at if pointer else None,
            "latest_version": latest.version if latest else None,
            "latest_state": latest.state if latest else None,
            "latest_quality": latest.quality if latest else None,
        },
        "speed": {
            "last_batch": progress.last_batch if progress else None,
            "last_bucket": progress.last_bucket if progress else None,
            "complete_through": progress.complete_through if progress else None,
            "updated_at": progress.updated_at if progress else None,
            "age_seconds": round((now - progress.updated_at).total_seconds(), 3) if progress and progress.updated_at else None,
            "lag_records": sum((newest.lag_by_partition or {}).values()) if newest else None,
            "lag_by_partition": dict(newest.lag_by_partition or {}) if newest else {},
            "freshness_ms": {
                "p50": newest.freshness_p50_ms if newest else None,
                "p95": newest.freshness_p95_ms if newest else None,
                "p99": newest.freshness_p99_ms if newest else None,
                "max": newest.freshness_max_ms if newest else None,
            },
            "duration_ms": newest.duration_ms if newest else None,
            "input_rows_per_second": newest.input_rows_per_second if newest else None,
            "processed_rows_per_second": newest.processed_rows_per_second if newest else None,
            "recent_batches": len(batches),
            "recent_valid_rows": sum(b.valid_rows or 0 for b in batches),
        },
        "quarantine_recent": quarantine,
    }


def _gauge(name: str, help_text: str, value: Any, labels: dict[str, str] | None = None) -> list[str]:
    if value is None:
        return []
    label = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}" if labels else ""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{label} {float(value)}"]


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def pipeline_metrics(figures: dict[str, Any]) -> str:
    batch, speed = figures["batch"], figures["speed"]
    lines: list[str] = []
    lines += _gauge("braid_batch_version", "The batch view version served.", batch["version"])
    lines += _gauge("braid_batch_cutoff_bucket", "The last handoff bucket the served batch version covers.", batch["cutoff"])
    lines += _gauge("braid_batch_cutoff_age_seconds", "Seconds since the end of the served cutoff's bucket.", batch["cutoff_age_seconds"])
    if batch["latest_state"] is not None:
        lines += _gauge(
            "braid_batch_latest_failed", "1 when the newest batch version failed its quality gate or run, else 0.",
            0 if batch["latest_state"] in ("published", "superseded", "retired") or batch["latest_quality"] is None or "failed" not in batch["latest_quality"] else 1,
        )  # fmt: skip
    lines += _gauge("braid_speed_last_batch", "The newest committed speed micro-batch.", speed["last_batch"])
    lines += _gauge("braid_speed_progress_age_seconds", "Seconds since the speed layer last recorded progress.", speed["age_seconds"])
    lines += _gauge("braid_speed_lag_records", "Kafka records not yet read by the speed layer (newest batch).", speed["lag_records"])
    lines += _gauge("braid_speed_batch_duration_ms", "Duration of the newest speed micro-batch.", speed["duration_ms"])
    lines += _gauge("braid_speed_input_rows_per_second", "Input rate of the newest speed micro-batch.", speed["input_rows_per_second"])
    lines += _gauge("braid_speed_processed_rows_per_second", "Processing rate of the newest speed micro-batch.", speed["processed_rows_per_second"])
    if speed["lag_by_partition"]:
        lines += ["# HELP braid_speed_partition_lag_records Kafka records not yet read, per partition.", "# TYPE braid_speed_partition_lag_records gauge"]
        lines += [f'braid_speed_partition_lag_records{{partition="{_escape(p)}"}} {float(v)}' for p, v in sorted(speed["lag_by_partition"].items())]
    freshness = [(q, v) for q, v in speed["freshness_ms"].items() if v is not None]
    if freshness:
        lines += ["# HELP braid_speed_freshness_ms Produced -> visible in Cassandra, newest micro-batch.", "# TYPE braid_speed_freshness_ms gauge"]
        lines += [f'braid_speed_freshness_ms{{quantile="{q}"}} {float(v)}' for q, v in freshness]
    if figures["quarantine_recent"]:
        lines += [f"# HELP braid_quarantined_records Records quarantined in the newest {RECENT_BATCHES} micro-batches, by reason.", "# TYPE braid_quarantined_records gauge"]
        lines += [f'braid_quarantined_records{{reason="{_escape(r)}"}} {float(c)}' for r, c in sorted(figures["quarantine_recent"].items())]
    return "\n".join(lines) + "\n"


class LatencyHistogram:
    """Request latency per route and status, as a Prometheus histogram."""

    BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], list[float]] = {}  # (route, status) -> bucket counts..., count, sum

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            counts = self._series.setdefault((route, str(status)), [0.0] * (len(self.BOUNDS) + 2))
            bucket = bisect_left(self.BOUNDS, seconds)
            if bucket < len(self.BOUNDS):  # slower than the largest bound: only in +Inf (the count)
                counts[bucket] += 1
            counts[-2] += 1
            counts[-1] += seconds

    def render(self) -> str:
        name = "braid_api_request_seconds"
        lines = [f"# HELP {name} Latency of the serving API's requests.", f"# TYPE {name} histogram"]
        with self._lock:
            series = {key: list(value) for key, value in self._series.items()}
        for (route, status), counts in sorted(series.items()):
            labels = f'route="{_escape(route)}",status="{status}"'
            cumulative = 0.0
            for bound, count in zip(self.BOUNDS, counts):
                cumulative += count
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
            lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {counts[-2]}')
            lines.append(f"{name}_count{{{labels}}} {counts[-2]}")
            lines.append(f"{name}_sum{{{labels}}} {counts[-1]}")
        return "\n".join(lines) + "\n"
