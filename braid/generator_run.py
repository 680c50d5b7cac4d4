"""Running the generator: pacing, sending to Kafka, several processes, and the ground-truth manifest on disk.

Manifest folder: `events.jsonl` (the valid events, one per distinct event_id, in no particular order) and
`summary.json` (counts per category and the quarantine reasons the platform must report).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from braid.generator import EventGenerator, GenerationSummary, GeneratorConfig

if TYPE_CHECKING:
    from braid.kafka import KafkaSecurity


@dataclasses.dataclass(frozen=True)
class RunOptions:
    rate: float | None  # records/s to sustain; None = as fast as possible
    bootstrap_servers: list[str] | None  # None = generate only (measures the generator itself)
    topic: str
    manifest_dir: Path | None
    kafka_security: KafkaSecurity | None = None  # SASL credentials, when the broker wants them


def _run_partition(config: GeneratorConfig, options: RunOptions) -> GenerationSummary:
    summary = GenerationSummary()
    producer = None
    if options.bootstrap_servers is not None:
        from braid.producer import EventProducer
        from schemas.contracts import default_contracts

        # Trusted path: the generator's records are sent as they are, malformed ones included, on purpose.
        security = options.kafka_security.client_config() if options.kafka_security else {}
        producer = EventProducer(options.bootstrap_servers, options.topic, registry=default_contracts(), validator=None, **security)
    manifest = None
    if options.manifest_dir is not None:
        manifest = open(options.manifest_dir / f"events-{config.partition}.jsonl", "wb")
    failures: list[BaseException] = []
    started = time.perf_counter()
    try:
        for index, record in enumerate(EventGenerator(config).records()):
            if producer is not None:
                producer.send_raw(record.key, record.value).add_errback(failures.append)
            if manifest is not None and record.event is not None and record.category != "duplicate":
                manifest.write(record.value + b"\n")
            summary.add(record)
            if options.rate and index % 256 == 0:
                ahead = index / options.rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if producer is not None:
            producer.flush()
            producer.close()
    finally:
        if manifest is not None:
            manifest.close()
    summary.seconds = time.perf_counter() - started
    summary.delivery_failures = len(failures)
    return summary


def run(config: GeneratorConfig, options: RunOptions, processes: int = 1, log: Callable[[str], None] = print) -> GenerationSummary:
    """Generate `config.count` records over `processes` processes; returns the merged summary."""
    if options.manifest_dir is not None:
        options.manifest_dir.mkdir(parents=True, exist_ok=True)
        for old in options.manifest_dir.glob("events-*.jsonl"):
            old.unlink()
    shares = [config.count // processes + (1 if part < config.count % processes else 0) for part in range(processes)]
    configs = [
        dataclasses.replace(config, partition=part, partitions=processes, count=share, nominal_rate=config.nominal_rate / processes)
        for part, share in enumerate(shares)
    ]
    per_process = dataclasses.replace(options, rate=options.rate / processes if options.rate else None)
    started = time.perf_counter()
    if processes == 1:
        summaries = [_run_partition(configs[0], per_process)]
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            summaries = list(pool.map(_run_partition, configs, [per_process] * processes))
    total = GenerationSummary()
    for summary in summaries:
        total.merge(summary)
    total.seconds = time.perf_counter() - started
    if options.manifest_dir is not None:
        data = {"config": _config_dict(config), "processes": processes, **total.as_dict()}
        (options.manifest_dir / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return total


def _config_dict(config: GeneratorConfig) -> dict:
    data = dataclasses.asdict(config)
    data["start"] = config.start.isoformat()
    return data


def read_manifest(manifest_dir: Path) -> list[dict]:
    """The ground truth: every valid, distinct event the run produced."""
    events = []
    for part in sorted(manifest_dir.glob("events-*.jsonl")):
        with open(part, "rb") as lines:
            events.extend(json.loads(line) for line in lines)
    return events
