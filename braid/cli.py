"""The `braid` command: thin wiring from arguments to the modules that do the work."""

from __future__ import annotations

import argparse
import sys

from braid.errors import BraidError
from braid.settings import SettingsError, load_settings


def _jars(args: argparse.Namespace) -> int:
    from braid.jvm import ensure_jars
    from braid.jvm.cds import ensure_archive

    settings = load_settings()
    ensure_jars(settings.jar_cache)
    if settings.spark_class_data_sharing:
        try:
            ensure_archive(settings.jar_cache)
        except BraidError as error:  # an optimisation: the jobs run without it, only their JVMs start slower
            print(f"{error}; Spark drivers start without a class-data-sharing archive", file=sys.stderr)
    print(settings.jar_cache)
    return 0


def _up(args: argparse.Namespace) -> int:
    from braid.services import local

    local.up(load_settings())
    return 0


def _down(args: argparse.Namespace) -> int:
    from braid.services import local

    local.down(load_settings())
    return 0


def _status(args: argparse.Namespace) -> int:
    from braid.services import local

    states = local.status(load_settings())
    print(f"{'service':<10} {'address':<22} {'pid':>8}  {'state':<5} data")
    for state in states:
        pid = str(state.pid) if state.pid else "-"
        print(f"{state.name:<10} {state.address:<22} {pid:>8}  {'up' if state.up else 'down':<5} {state.data_dir}")
    settings = load_settings()
    from braid.services import background, process

    speed_pid = process.running_pid(background.speed_spec(settings))
    print(f"{'speed':<10} {'-':<22} {str(speed_pid or '-'):>8}  {'up' if speed_pid else 'down':<5} {background.speed_spec(settings).data_dir}")
    if any(state.name == "cassandra" and state.up for state in states):
        for line in _speed_report(settings):
            print(line)
    return 0


def _speed_report(settings) -> list[str]:
    """The speed layer's progress and its newest micro-batch, from Cassandra (empty before `braid migrate`)."""
    from datetime import UTC, datetime

    from braid.cassandra import cluster_from_settings
    from schemas.contracts import rules

    cluster = cluster_from_settings(settings)
    try:
        session = cluster.connect()
        try:
            progress = session.execute(f"SELECT * FROM {settings.cassandra_keyspace}.pipeline_progress WHERE job = 'speed'").one()
            batch = session.execute(f"SELECT * FROM {settings.cassandra_keyspace}.speed_batches WHERE job = 'speed' LIMIT 1").one()
        except Exception:  # not migrated yet: nothing to report
            return []
    finally:
        cluster.shutdown()
    if progress is None:
        return ["speed layer: no batch committed yet"]
    bucket = rules(settings.rules_file).handoff_bucket_seconds
    if progress.complete_through is None:
        complete = "no complete bucket archived yet"
    else:
        complete_end = datetime.fromtimestamp((progress.complete_through + 1) * bucket, UTC)
        complete = f"complete through bucket {progress.complete_through} (ingested before {complete_end:%Y-%m-%d %H:%M:%S}Z)"
    lines = [
        f"speed layer: batch {progress.last_batch}, handoff bucket {progress.last_bucket}; master dataset {complete}; "
        f"updated {progress.updated_at:%H:%M:%S}Z"
    ]
    if batch is not None:
        lag = sum((batch.lag_by_partition or {}).values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((batch.quarantine_by_reason or {}).items())) or "none"
        lines.append(
            f"  last batch: {batch.input_rows} records ({batch.valid_rows} valid, {batch.quarantined_rows} quarantined: {reasons}), "
            f"{batch.view_rows} view rows"
        )
        lines.append(
            f"  duration {batch.duration_ms} ms, input {batch.input_rows_per_second or 0:.0f}/s, processed "
            f"{batch.processed_rows_per_second or 0:.0f}/s, lag {lag} records "
            f"({', '.join(f'{k}={v}' for k, v in sorted((batch.lag_by_partition or {}).items()))})"
        )
        lines.append(
            f"  freshness (produced -> in Cassandra): p50 {batch.freshness_p50_ms} ms, p95 {batch.freshness_p95_ms} ms, "
            f"p99 {batch.freshness_p99_ms} ms, max {batch.freshness_max_ms} ms"
        )
    return lines


def _smoke(args: argparse.Namespace) -> int:
    from braid.smoke import run_smoke

    run_smoke(load_settings(), events=args.events)
    return 0


def _schemas_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from schemas.contracts import CONTRACTS_DIR, ContractError, check_registry, load_contracts
    from schemas.views import VIEWS_DIR, load_views

    contracts_dir = Path(args.contracts) if args.contracts else CONTRACTS_DIR
    try:
        registry = load_contracts(contracts_dir)
        problems = check_registry(registry)
        views = load_views(Path(args.views) if args.views else VIEWS_DIR, registry)
    except ContractError as error:
        raise BraidError(f"schemas: {error}") from None
    if problems:
        for problem in problems:
            print(f"braid: schemas: {problem}", file=sys.stderr)
        return 2
    types = ", ".join(f"{name} v{'/v'.join(str(v) for v in sorted(versions))}" for name, versions in registry.items())
    print(f"schemas: ok: {types}; {len(views)} views ({', '.join(views)})")
    return 0


def _schemas_show(args: argparse.Namespace) -> int:
    import json

    from schemas.contracts import default_contracts

    registry = default_contracts()
    if args.event_type not in registry:
        raise BraidError(f"schemas: no contract for event type {args.event_type!r} (known: {', '.join(registry)})")
    versions = registry[args.event_type]
    version = args.version or max(versions)
    if version not in versions:
        raise BraidError(f"schemas: {args.event_type} has no version {version} (known: {sorted(versions)})")
    print(json.dumps(versions[version].json_schema(), indent=2))
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    from braid.kafka import KafkaSecurity, create_topic

    settings = load_settings()
    retention = {"retention.ms": str(settings.topic_retention_hours * 3600 * 1000)}
    for topic in (settings.events_topic, settings.dead_letter_topic):
        created = create_topic(
            settings.kafka_bootstrap_servers,
            topic,
            partitions=settings.topic_partitions,
            replication=settings.topic_replication,
            config=retention,
            security=KafkaSecurity.from_settings(settings),
        )
        print(f"topic {topic}: {'created' if created else 'exists'} ({settings.topic_partitions} partitions, "
              f"replication {settings.topic_replication}, retention {settings.topic_retention_hours} h)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime
    from pathlib import Path

    from braid.generator import GeneratorConfig
    from braid.generator_run import RunOptions, run
    from braid.kafka import KafkaSecurity

    settings = load_settings()
    count = args.count if args.duration is None else int(args.duration * (args.rate or 0))
    if args.duration is not None and not args.rate:
        raise BraidError("generate: --duration needs --rate (events/s)")
    start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    if start.tzinfo is None:
        raise BraidError(f"generate: --start {args.start!r} needs a time zone, e.g. 2026-11-24T12:00:00Z")
    try:
        config = GeneratorConfig(
            seed=args.seed, count=count, start=start, nominal_rate=args.rate or 10_000.0, users=args.keys,
            late_fraction=args.late, duplicate_fraction=args.duplicates, malformed_fraction=args.malformed,
            out_of_order_fraction=args.out_of_order, max_lateness_seconds=args.max_lateness_hours * 3600,
            event_bytes=args.event_bytes,
        )  # fmt: skip
    except ValueError as error:
        raise BraidError(f"generate: {error}") from None
    options = RunOptions(
        rate=args.rate,
        bootstrap_servers=None if args.dry_run else settings.kafka_bootstrap_servers,
        topic=args.topic or settings.events_topic,
        manifest_dir=Path(args.manifest) if args.manifest else None,
        kafka_security=KafkaSecurity.from_settings(settings),
    )
    summary = run(config, options, processes=args.processes)
    report = summary.as_dict()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        target = "nowhere (dry run)" if args.dry_run else f"{options.topic}"
        print(f"generate: {report['produced']} records to {target} in {report['seconds']} s: "
              f"{report['events_per_second']} events/s, {report['megabytes_per_second']} MB/s "
              f"(mean {report['mean_event_bytes']} bytes, {args.processes} process(es))")
        for category, number in report["categories"].items():
            print(f"  {category:<34} {number}")
        print(f"  valid (raw, as the master dataset holds them) {report['valid_raw']}, distinct {report['valid_unique']}, "
              f"to quarantine {report['quarantine_expected']}")
        if options.manifest_dir:
            print(f"  ground truth: {options.manifest_dir}/events-*.jsonl and summary.json")
    if summary.delivery_failures:
        raise BraidError(f"generate: Kafka did not acknowledge {summary.delivery_failures} records")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    import uvicorn

    from braid.auth import ApiTokens
    from braid.ingest import create_app
    from braid.kafka import KafkaSecurity
    from braid.producer import EventProducer
    from schemas.contracts import default_contracts, rules
    from schemas.validation import Validator

    settings = load_settings()
    tokens = ApiTokens.from_settings(settings)
    if tokens.enabled and tokens.write is None:
        raise BraidError("ingest: BRAID_API_READ_TOKEN is set but BRAID_API_WRITE_TOKEN is not, so every event would be refused; set it")
    registry = default_contracts()
    security = KafkaSecurity.from_settings(settings)
    producer = EventProducer(settings.kafka_bootstrap_servers, settings.events_topic, registry=registry, validator=None, **security.client_config())
    app = create_app(
        producer, Validator(registry, rules(settings.rules_file)), max_batch=settings.ingest_max_batch, max_event_bytes=rules(settings.rules_file).max_event_bytes,
        tokens=tokens,
    )  # fmt: skip
    uvicorn.run(app, host=settings.ingest_host, port=settings.ingest_port, log_level="warning")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from braid.cassandra import cluster_from_settings, replication_map
    from braid.migrations import load_migrations, migrate

    settings = load_settings()
    cluster = cluster_from_settings(settings)
    try:
        session = cluster.connect()
        applied = migrate(
            session,
            settings.cassandra_keyspace,
            replication_map(settings.cassandra_replication_class, settings.cassandra_replication_factor, settings.cassandra_local_datacenter),
            load_migrations(),
        )
        granted = []
        if settings.cassandra_reader_username is not None:
            from braid.cassandra_roles import grant_reads
            from serving.store import READ_TABLES

            granted = grant_reads(session, settings.cassandra_keyspace, settings.cassandra_reader_username, READ_TABLES)
    finally:
        cluster.shutdown()
    print(f"migrate: {settings.cassandra_keyspace}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    if granted:
        print(f"migrate: role {settings.cassandra_reader_username!r} may SELECT {', '.join(granted)}")
    return 0


def _speed_run(args: argparse.Namespace) -> int:
    from speed.main import run_speed

    # Flushed line by line: the log is usually a file, and a line that waits in a buffer tells an operator nothing.
    run_speed(load_settings(), once=args.once, log=lambda message: print(message, flush=True))
    return 0


def _speed_start(args: argparse.Namespace) -> int:
    from braid.services import background

    settings = load_settings()
    pid = background.start_speed(settings)
    print(f"speed: running in the background (pid {pid}); log: {background.speed_spec(settings).log_file}")
    return 0


def _speed_stop(args: argparse.Namespace) -> int:
    from braid.services import background

    stopped = background.stop_speed(load_settings())
    print("speed: stopped" if stopped else "speed: was not running")
    return 0


def _bench_ingest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from braid.bench_ingest import bench_ingest
    from braid.services import local

    settings = load_settings()
    local.up(settings)
    report = bench_ingest(
        settings, start_rate=args.start_rate, max_rate=args.max_rate, probe_seconds=args.probe_seconds,
        sustain_seconds=args.sustain_seconds, repeats=args.repeats, producers=args.producers, output=Path(args.output),
        rates=args.rates,
    )  # fmt: skip
    held = report["sustained_rate"]
    print(f"bench: highest sustained rate {held:,} events/s ({report['gap']}x short of the target)" if held else "bench: no rate was sustained")
    print(f"bench: written to {args.output}")
    return 0


def _bench_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from braid.bench_report import build

    try:
        built = build(Path(args.dir), Path(args.readme) if args.readme else None)
    except FileNotFoundError as error:
        raise BraidError(f"bench: {error}") from None
    for chart in built["charts"]:
        print(f"bench: chart {chart}")
    print(f"bench: table {args.dir}/results.md{' (embedded in ' + args.readme + ')' if built['readme'] else ''}; per-core figures {args.dir}/summary.json")
    return 0


def _bench_all(args: argparse.Namespace) -> int:
    """Every benchmark, then the report: about 2 hours on the 2-core machine (`--quick`: a few minutes, to try it)."""
    quick = args.quick
    out = args.dir
    common = {"repeats": 1 if quick else args.repeats}
    steps = [
        argparse.Namespace(start_rate=500 if quick else 1000, max_rate=1000 if quick else 200_000, probe_seconds=60 if quick else 150,
                           sustain_seconds=30 if quick else 300, producers=2, output=f"{out}/ingest.json", **common),
        argparse.Namespace(sizes="1000000" if quick else "1000000,10000000,100000000", output=f"{out}/batch.json", **common),
        argparse.Namespace(clients="1,8" if quick else "1,8,32", seconds=5.0 if quick else 20.0, events=20_000 if quick else 60_000,
                           output=f"{out}/serving.json", **common),
    ]  # fmt: skip
    for run, step in zip((_bench_ingest, _bench_batch, _bench_serving), steps):
        run(step)
    return _bench_report(argparse.Namespace(dir=out, readme=args.readme))


def _soak(args: argparse.Namespace) -> int:
    from pathlib import Path

    from braid.services import local
    from braid.soak import default_rate, soak, summary_lines

    if args.minutes <= 0:
        raise BraidError(f"soak: --minutes must be more than 0, got {args.minutes:g}")
    if args.batch_every < 0:
        raise BraidError(f"soak: --batch-every must be 0 (no batch runs) or more, got {args.batch_every:g}")
    if args.sample_seconds <= 0:
        raise BraidError(f"soak: --sample-seconds must be more than 0, got {args.sample_seconds:g}")
    if args.full_every < 0:
        raise BraidError(f"soak: --full-every must be 0 (only the first run in full) or more, got {args.full_every}")
    if not 0 <= args.batch_nice <= 19:
        raise BraidError(f"soak: --batch-nice must be 0 to 19, got {args.batch_nice}")
    rate = args.rate or default_rate(Path(args.bench))
    settings = load_settings()
    local.up(settings)
    report = soak(
        settings, rate=rate, minutes=args.minutes, batch_every=args.batch_every, retire_grace=args.retire_grace,
        sample_seconds=args.sample_seconds, producers=args.producers, output=Path(args.output), full_every=args.full_every,
        batch_nice=args.batch_nice,
    )  # fmt: skip
    for line in summary_lines(report):
        print(line)
    print(f"soak: {'everything stayed flat' if report['flat'] else 'grew: ' + ', '.join(report['grew'] or ['failed batch runs'])}; "
          f"written to {args.output}")  # fmt: skip
    return 0 if report["flat"] else 1


def _batch_run(args: argparse.Namespace) -> int:
    from batch.delta_io import probe_writable
    from batch.job import batch_context, new_run_id, run_all
    from batch.stages import FULL, INCREMENTAL
    from braid.jvm import ensure_jars
    from braid.spark import session_from_settings

    settings = load_settings()
    ensure_jars(settings.jar_cache)
    probe_writable(settings.lake_root)
    with batch_context(settings) as context:
        spark = session_from_settings(settings, "braid-batch")
        record = run_all(spark, context, args.run_id or new_run_id(), args.cutoff, INCREMENTAL if args.incremental else FULL)
    print(f"batch: version {record.version} (cutoff {record.cutoff}) is {record.state}")
    return 0


def _batch_status(args: argparse.Namespace) -> int:
    for line in _batch_report(load_settings(), limit=args.limit):
        print(line)
    return 0


def _batch_report(settings, limit: int = 5) -> list[str]:
    """The served batch version and the newest versions, from Cassandra."""
    from datetime import UTC, datetime

    from batch.job import batch_context
    from schemas.contracts import rules

    with batch_context(settings, log=lambda message: None) as context:
        pointer = context.store.pointer()
        records = context.store.versions(limit)
    if pointer is None:
        lines = ["batch layer: no version published yet"]
    else:
        end = datetime.fromtimestamp((pointer.cutoff + 1) * rules(settings.rules_file).handoff_bucket_seconds, UTC)
        age = (datetime.now(UTC) - end).total_seconds()
        lines = [
            f"batch layer: serving version {pointer.version}, cutoff bucket {pointer.cutoff} (ingested before "
            f"{end:%Y-%m-%d %H:%M:%S}Z, {age:.0f} s ago); published {pointer.published_at:%Y-%m-%d %H:%M:%S}Z"
        ]
    for record in records:
        rows = sum(record.view_rows.values())
        lines.append(
            f"  version {record.version}: cutoff {record.cutoff}, {record.mode}, {record.state}, {rows} view rows, "
            f"{record.events if record.events is not None else '-'} events, run {record.run_id}"
        )
        if record.quality and record.state not in ("published", "superseded"):
            lines.append(f"    quality: {record.quality}")
    return lines


def _bench_batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from braid.bench_batch import bench_batch

    sizes = [int(size) for size in args.sizes.split(",")]
    report = bench_batch(load_settings(), sizes, args.repeats, Path(args.output))
    for result in report["results"]:
        print(
            f"bench: {result['events']:,} events: Braid {result['braid_events_per_second']:,} events/s, DuckDB "
            f"{result['duckdb_events_per_second']:,} events/s (Braid/DuckDB {result['braid_over_duckdb_throughput']}), "
            f"same answers {result['same_answers']}"
        )
    print(f"bench: written to {args.output}")
    return 0


def _capacity(args: argparse.Namespace) -> int:
    from braid.capacity import main as capacity_main

    return capacity_main(["--summary", args.summary])


def _demo(args: argparse.Namespace) -> int:
    import os

    from braid.demo import demo_environment, run_demo

    os.environ.update(demo_environment(load_settings()))
    ok = run_demo(load_settings(), minutes=args.minutes, rate=args.rate, keep=args.keep, log=lambda m: print(m, flush=True))
    return 0 if ok else 1


def _serve(args: argparse.Namespace) -> int:
    from serving.main import run_api

    settings = load_settings()
    print(f"serve: dashboard and API at http://{settings.serving_host}:{settings.serving_port}/", flush=True)
    run_api(settings)
    return 0


def _query(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from datetime import UTC, datetime, timedelta

    from serving.api import _json, parse_time
    from serving.main import open_queries
    from serving.queries import QueryError

    settings = load_settings()
    now = datetime.now(UTC)
    try:
        with open_queries(settings) as queries:
            if args.what == "views":
                answer: object = {"views": queries.describe_views()}
            else:
                end = parse_time(args.end, "--end", now) or now
                start = parse_time(args.start, "--start", now) or end - timedelta(hours=1)
                if args.what == "series":
                    answer = asdict(queries.series(args.view, args.key, start, end, args.grain))
                else:
                    answer = asdict(queries.top(args.view, start, end, args.n, args.metric))
    except QueryError as error:
        raise BraidError(f"query: {error}") from None
    answer = _json(answer)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for line in _query_table(args.what, answer):
        print(line)
    return 0


def _query_table(what: str, answer: dict) -> list[str]:
    if what == "views":
        return [f"{v['name']:<30} {v['grain']:>4}  key ({', '.join(v['dimensions'])})  metrics {', '.join(v['metrics'])}" for v in answer["views"]]
    fresh = answer["freshness"]
    lines = [
        f"freshness: batch version {fresh['batch_version']} (cutoff bucket {fresh['batch_cutoff']}, age {fresh['batch_age_seconds']} s); "
        f"speed batch {fresh['speed_batch']} (age {fresh['speed_age_seconds']} s)"
    ]
    if what == "series":
        names = sorted({name for point in answer["points"] for name in point["metrics"]})
        lines.append(f"{'window':<22} " + " ".join(f"{name:>16}" for name in names) + "  from")
        for point in answer["points"]:
            lines.append(f"{point['window_start']:<22} " + " ".join(f"{point['metrics'].get(name, '-')!s:>16}" for name in names) + f"  {point['source']}")
    else:
        lines.append(f"{'key':<40} {answer['metric']:>16}  from")
        for entry in answer["entries"]:
            lines.append(f"{' / '.join(entry['key']):<40} {entry['value']!s:>16}  {entry['source']}")
    return lines


def _bench_serving(args: argparse.Namespace) -> int:
    from pathlib import Path

    from braid.bench_serving import bench_serving

    from braid.services import local

    settings = load_settings()
    local.up(settings)
    clients = [int(count) for count in args.clients.split(",")]
    bench_serving(settings, clients, args.seconds, args.events, Path(args.output), repeats=args.repeats)
    print(f"bench: written to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="braid", description="Braid: fresh and exact answers over an event stream.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("jars", help="resolve the pinned JVM jars into the jar cache (once; later runs are offline)").set_defaults(run=_jars)
    commands.add_parser("up", help="start local Kafka and Cassandra and wait until both answer").set_defaults(run=_up)
    commands.add_parser("down", help="stop the local services gracefully").set_defaults(run=_down)
    commands.add_parser("status", help="show each local service: address, pid, up/down, data folder").set_defaults(run=_status)
    smoke = commands.add_parser("smoke", help="run the smoke pipeline: Kafka -> Spark -> Delta -> Cassandra")
    smoke.add_argument("--events", type=_positive, default=1000, help="events to produce (default 1000)")
    smoke.set_defaults(run=_smoke)

    schemas = commands.add_parser("schemas", help="event contracts and views").add_subparsers(dest="action", required=True)
    check = schemas.add_parser("check", help="load every contract and view; refuse a version that breaks compatibility")
    check.add_argument("--contracts", help="a contracts folder to check instead of schemas/contracts")
    check.add_argument("--views", help="a views folder to check instead of schemas/views")
    check.set_defaults(run=_schemas_check)
    show = schemas.add_parser("show", help="print the full JSON Schema of an event type (envelope + payload)")
    show.add_argument("event_type")
    show.add_argument("--version", type=_positive)
    show.set_defaults(run=_schemas_show)

    topics = commands.add_parser("topics", help="Kafka topics").add_subparsers(dest="action", required=True)
    topics.add_parser("create", help="create the events topic and the dead-letter topic from settings").set_defaults(run=_topics_create)

    generate = commands.add_parser("generate", help="produce a realistic, deterministic event stream to Kafka")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--count", type=_positive, default=10_000, help="records to produce (default 10000)")
    generate.add_argument("--duration", type=float, help="seconds to run at --rate (instead of --count)")
    generate.add_argument("--rate", type=float, help="records/s to sustain (default: as fast as possible)")
    generate.add_argument("--keys", type=_positive, default=5_000, help="distinct users, Zipf-popular (default 5000)")
    generate.add_argument("--late", type=float, default=0.05, help="fraction of late events (default 0.05)")
    generate.add_argument("--max-lateness-hours", type=float, default=3.0, help="lateness cap (default 3)")
    generate.add_argument("--out-of-order", type=float, default=0.2, help="fraction slightly out of order (default 0.2)")
    generate.add_argument("--duplicates", type=float, default=0.02, help="fraction resent with the same event_id (default 0.02)")
    generate.add_argument("--malformed", type=float, default=0.01, help="fraction malformed, every kind (default 0.01)")
    generate.add_argument("--event-bytes", type=int, default=0, help="pad page views to about this size, e.g. 1000")
    generate.add_argument("--start", help="event time of the first record (ISO 8601 with zone; default now)")
    generate.add_argument("--processes", type=_positive, default=1, help="generating processes (default 1)")
    generate.add_argument("--topic", help="topic (default: the events topic of the settings)")
    generate.add_argument("--manifest", help="folder for the ground truth: events-*.jsonl and summary.json")
    generate.add_argument("--dry-run", action="store_true", help="generate without sending: measures the generator alone")
    generate.add_argument("--json", action="store_true", help="print the report as JSON")
    generate.set_defaults(run=_generate)

    commands.add_parser("migrate", help="apply the CQL migrations of schemas/cql (idempotent)").set_defaults(run=_migrate)

    speed = commands.add_parser("speed", help="the speed layer's streaming job").add_subparsers(dest="action", required=True)
    speed_run = speed.add_parser("run", help="run in the foreground until stopped")
    speed_run.add_argument("--once", action="store_true", help="process what Kafka holds now, then stop")
    speed_run.set_defaults(run=_speed_run)
    speed.add_parser("start", help="run in the background").set_defaults(run=_speed_start)
    speed.add_parser("stop", help="stop the background job gracefully").set_defaults(run=_speed_stop)

    bench = commands.add_parser("bench", help="benchmarks that write JSON").add_subparsers(dest="action", required=True)
    bench_ingest = bench.add_parser("ingest", help="the highest rate the whole path sustains, and its freshness (needs ~30 min)")
    bench_ingest.add_argument("--start-rate", type=_positive, default=1000, help="events/s of the first probe; doubled until one fails")
    bench_ingest.add_argument("--max-rate", type=_positive, default=200_000, help="stop doubling here")
    bench_ingest.add_argument("--probe-seconds", type=float, default=150.0, help="seconds of production per probe (a new job's first batch takes 40-50 s)")
    bench_ingest.add_argument("--sustain-seconds", type=float, default=300.0, help="seconds the best rate must hold")
    bench_ingest.add_argument("--repeats", type=_positive, default=3, help="runs per lower rate; medians are reported")
    bench_ingest.add_argument("--producers", type=_positive, default=2, help="generator processes")
    bench_ingest.add_argument("--rates", type=lambda text: [_positive(part) for part in text.split(",")], default=None,
                              help="also measure freshness at these rates first, e.g. 2000,10000")  # fmt: skip
    bench_ingest.add_argument("--output", default="bench/ingest.json", help="the JSON report")
    bench_ingest.set_defaults(run=_bench_ingest)
    bench_report = bench.add_parser("report", help="charts, the Markdown table and per-core figures from the JSON reports")
    bench_report.add_argument("--dir", default="bench", help="where the JSON reports are; charts and tables go there too")
    bench_report.add_argument("--readme", default="README.md", help="embed the table here, between the bench markers ('' for none)")
    bench_report.set_defaults(run=_bench_report)
    bench_all = bench.add_parser("all", help="every benchmark, then the report (about 2 hours; --quick: minutes)")
    bench_all.add_argument("--quick", action="store_true", help="short runs, one repeat, 1 M events: to try the suite, not to quote")
    bench_all.add_argument("--repeats", type=_positive, default=3, help="runs per measurement; medians are reported")
    bench_all.add_argument("--dir", default="bench", help="where the reports, charts and tables go")
    bench_all.add_argument("--readme", default="README.md", help="embed the table here ('' for none)")
    bench_all.set_defaults(run=_bench_all)
    bench_batch = bench.add_parser("batch", help="batch recompute throughput, side by side with DuckDB over the same snapshot")
    bench_batch.add_argument("--sizes", default="1000000,10000000,100000000", help="master dataset sizes in events, comma-separated")
    bench_batch.add_argument("--repeats", type=_positive, default=3, help="runs per size; the median is reported")
    bench_batch.add_argument("--output", default="bench/batch.json", help="the JSON report")
    bench_batch.set_defaults(run=_bench_batch)
    bench_serving = bench.add_parser("serving", help="merged query latency through the API at several concurrencies (needs braid up)")
    bench_serving.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    bench_serving.add_argument("--seconds", type=float, default=20.0, help="seconds per query kind and concurrency")
    bench_serving.add_argument("--events", type=_positive, default=60_000, help="events the bench's stream carries")
    bench_serving.add_argument("--repeats", type=_positive, default=3, help="runs per query kind and concurrency; medians are reported")
    bench_serving.add_argument("--output", default="bench/serving.json", help="the JSON report")
    bench_serving.set_defaults(run=_bench_serving)

    soak = commands.add_parser("soak", help="the full path at half the sustained rate for a long time: did lag, memory and partitions stay flat")
    soak.add_argument("--rate", type=_positive, default=None, help="events/s (default: half the sustained rate in --bench)")
    soak.add_argument("--minutes", type=float, default=30.0, help="minutes of production")
    soak.add_argument("--batch-every", type=float, default=5.0, help="minutes between batch runs in the soak's namespace (0: none)")
    soak.add_argument("--full-every", type=int, default=1, help="every N-th batch run recomputes in full, the others incrementally (0: only the first)")
    soak.add_argument("--batch-nice", type=int, default=10, help="niceness added to the batch runs (0-19): the cores the speed layer leaves idle")
    soak.add_argument("--retire-grace", type=int, default=60, help="seconds a superseded version stays readable in the soak's namespace")
    soak.add_argument("--sample-seconds", type=float, default=30.0, help="seconds between samples of the serving tables' partitions")
    soak.add_argument("--producers", type=_positive, default=2, help="generator processes")
    soak.add_argument("--bench", default="bench/ingest.json", help="the ingest benchmark's report, for the default rate")
    soak.add_argument("--output", default="bench/soak.json", help="the JSON report")
    soak.set_defaults(run=_soak)

    commands.add_parser("ingest", help="serve the HTTP ingest endpoint (POST /v1/events)").set_defaults(run=_ingest)

    batch = commands.add_parser("batch", help="the batch layer: exact views recomputed from the master dataset").add_subparsers(dest="action", required=True)
    batch_run = batch.add_parser("run", help="recompute every view up to a cutoff, check it, publish it (every stage, this process)")
    batch_run.add_argument("--cutoff", type=_bucket, default=None, help="the last handoff bucket to cover (default: the newest complete one)")
    batch_run.add_argument("--incremental", action="store_true", help="recompute only the windows touched since the served version")
    batch_run.add_argument("--run-id", default=None, help="continue this run's version if it has one (default: a new run)")
    batch_run.set_defaults(run=_batch_run)
    commands.add_parser("serve", help="serve the query API and the dashboard").set_defaults(run=_serve)
    capacity = commands.add_parser("capacity", help="cluster sizes for 83k to 1M events/s from the benchmark's per-core figures")
    capacity.add_argument("--summary", default="bench/summary.json", help="the benchmark summary `braid bench report` writes")
    capacity.set_defaults(run=_capacity)
    demo = commands.add_parser("demo", help="the whole platform on local defaults, narrated, checked against the ground truth")
    demo.add_argument("--minutes", type=float, default=2.0, help="how long the generator streams")
    demo.add_argument("--rate", type=float, default=500.0, help="events per second the generator produces")
    demo.add_argument("--keep", action="store_true", help="leave everything running at the end (braid down stops it)")
    demo.set_defaults(run=_demo)
    query = commands.add_parser("query", help="merged answers (batch + speed) on the command line").add_subparsers(dest="what", required=True)
    query.add_parser("views", help="the declared views").add_argument("--json", action="store_true")
    query.choices["views"].set_defaults(run=_query)
    for name, text in (("series", "one key's merged series over a time range"), ("top", "the top keys of a view over a time range")):
        sub = query.add_parser(name, help=text)
        sub.add_argument("view")
        if name == "series":
            sub.add_argument("--key", action="append", required=True, help="one value per dimension, in order (repeat the flag)")
            sub.add_argument("--grain", default=None, help="a coarser grain than the view's (e.g. 5m, 1h)")
        else:
            sub.add_argument("--n", type=_positive, default=10)
            sub.add_argument("--metric", default=None)
        sub.add_argument("--start", default=None, help="ISO 8601 or relative (-15m, -2h, -1d); default an hour before --end")
        sub.add_argument("--end", default=None, help="ISO 8601 or relative; default now")
        sub.add_argument("--json", action="store_true", help="JSON instead of a table")
        sub.set_defaults(run=_query)
    batch_status = batch.add_parser("status", help="the served version and the newest versions")
    batch_status.add_argument("--limit", type=_positive, default=5)
    batch_status.set_defaults(run=_batch_status)
    return parser


def _bucket(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a handoff bucket number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a handoff bucket number (0 or more), got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _unreachable(error: Exception) -> str | None:
    """One line for the usual operational failures, a service that does not answer or refuses the credentials; None
    for anything else."""
    from cassandra.cluster import NoHostAvailable
    from kafka.errors import KafkaError

    from braid.cassandra import authentication_failure
    from braid.errors import storage_failure
    from braid.kafka import KafkaSecurity, broker_answers, refused_message

    settings = load_settings()
    refused = authentication_failure(error) or storage_failure(error)
    if refused is not None:
        return refused
    security = KafkaSecurity.from_settings(settings)
    if isinstance(error, KafkaError) and security.sasl and broker_answers(settings.kafka_bootstrap_servers):
        return refused_message(settings.kafka_bootstrap_servers, security)  # a producer's or consumer's timeout
    if isinstance(error, KafkaError) and "bootstrap" in str(error).lower():
        return f"kafka: no broker answers at {','.join(settings.kafka_bootstrap_servers)} (start one with 'braid up')"
    if isinstance(error, NoHostAvailable):
        points = ",".join(f"{point}:{settings.cassandra_port}" for point in settings.cassandra_contact_points)
        return f"cassandra: no node answers at {points} (start one with 'braid up')"
    return None


def main(argv: list[str] | None = None) -> int:
    import logging

    # kafka-python logs every refused or dropped connection as an error; a command reports the failure itself, once.
    logging.getLogger("kafka").addHandler(logging.NullHandler())
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (BraidError, SettingsError) as error:
        print(f"braid: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        reason = _unreachable(error)
        if reason is None:
            raise
        print(f"braid: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("braid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
