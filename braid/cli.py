"""The `braid` command: thin wiring from arguments to the modules that do the work."""

from __future__ import annotations

import argparse
import sys

from braid.errors import BraidError
from braid.settings import SettingsError, load_settings


def _jars(args: argparse.Namespace) -> int:
    from braid.jvm import ensure_jars

    settings = load_settings()
    ensure_jars(settings.jar_cache)
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
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from braid.smoke import run_smoke

    run_smoke(load_settings(), events=args.events)
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
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (BraidError, SettingsError) as error:
        print(f"braid: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("braid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
