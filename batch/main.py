"""Entry point of the batch layer: every stage in one process, one stage (what the Airflow DAG submits), or upkeep.

    braid batch run [--cutoff H] [--incremental]                 # the same as `run` below, on the local defaults
    spark-submit --master spark://master:7077 batch/main.py run --cutoff H
    spark-submit --master spark://master:7077 batch/main.py stage recompute --run-id R
    spark-submit --master spark://master:7077 batch/main.py compact           # Delta OPTIMIZE + VACUUM
    spark-submit --master spark://master:7077 batch/main.py retire-versions   # superseded versions' rows

On a cluster the nodes need Braid installed (the docker image has it) and the deployment's BRAID_* settings.
Exit status: 0 done, 2 a clear error (one line), 3 the quality gate refused the version (not worth retrying).
"""

from __future__ import annotations

import argparse
import sys

from batch.delta_io import probe_writable
from batch.job import SPARK_STAGES, batch_context, new_run_id, record_of_run, run_all, run_stage
from batch.maintenance import compact_and_vacuum, retire_versions
from batch.stages import FULL, INCREMENTAL, QualityGateFailed
from braid.errors import BraidError, storage_failure
from braid.settings import load_settings
from braid.spark import session_from_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch/main.py")
    parser.add_argument("command", choices=["run", "stage", "compact", "retire-versions"])
    parser.add_argument("stage", nargs="?", choices=SPARK_STAGES)
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--cutoff", type=int, default=None)
    parser.add_argument("--incremental", action="store_true")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        if args.command != "retire-versions":  # the others write Delta tables
            probe_writable(settings.lake_root)
        with batch_context(settings) as context:
            spark = session_from_settings(settings, f"braid-batch-{args.stage or args.command}")
            if args.command == "run":
                run_all(spark, context, args.run_id or new_run_id(), args.cutoff, INCREMENTAL if args.incremental else FULL)
            elif args.command == "stage":
                run_stage(spark, context, args.stage, record_of_run(context, args.run_id))
            elif args.command == "compact":
                compact_and_vacuum(spark, context, settings.delta_vacuum_retention_hours)
            else:
                retire_versions(spark, context)
    except BraidError as error:
        print(f"braid: {error}", file=sys.stderr)
        return 3 if isinstance(error, QualityGateFailed) else 2
    except Exception as error:
        refused = storage_failure(error)  # e.g. the lake's disk went read-only: one line, and a retry may succeed
        if refused is None:
            raise
        print(f"braid: {refused}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
