"""The batch layer's quality gate: Great Expectations suites derived from the contracts and view declarations, run
over Spark DataFrames, with the results kept as Data Docs in a file project.

`snapshot_frame`, `snapshot_expectations` and `view_frame_expectations` are pure; `validate` is the one function that
touches GE's project on disk. A failed expectation is a finding in the returned report, never an exception.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas.contracts import ENVELOPE_FIELDS, Contract, Rules
from schemas.spark_types import INGESTION_FIELDS
from schemas.views import View

# Set before the import: importing GE logs a few hundred lines of registry chatter at INFO.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
from great_expectations.core.result_format import ResultFormat  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.expectations import Expectation  # noqa: E402

# GE's file stores turn dots in a name into sub-folders; keep suite names plain.
_SUITE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_DATASOURCE = "braid_spark"
_BATCH_DEFINITION = "whole_frame"
_EXAMPLES = 3  # unexpected values quoted in a finding


@dataclass(frozen=True)
class Finding:
    """One failed expectation."""

    expectation: str
    column: str | None
    detail: str


@dataclass(frozen=True)
class QualityReport:
    suite: str
    success: bool
    evaluated: int
    failures: tuple[Finding, ...]
    docs_index: str | None

    def summary(self) -> str:
        if not self.failures:
            return f"{self.suite}: passed {self.evaluated} expectations"
        findings = "; ".join(f"{f.expectation}({f.column or ''}): {f.detail}" for f in self.failures)
        return f"{self.suite}: {len(self.failures)} of {self.evaluated} failed: {findings}"


def snapshot_frame(events: DataFrame) -> DataFrame:
    """A master snapshot of one event type, flattened for validation: envelope and ingestion columns, each payload
    field as `payload_<field>`, and `lateness_seconds` (ingested_at - event_time; negative for a future event_time)."""
    ingestion = [field.name for field in INGESTION_FIELDS]
    missing = [name for name in (*ENVELOPE_FIELDS, "payload", *ingestion) if name not in events.columns]
    if missing:
        raise ValueError(f"snapshot_frame: the events lack master dataset columns {missing}; expected master_schema's")
    payload_fields = events.schema["payload"].dataType.fieldNames()
    return events.select(
        *ENVELOPE_FIELDS,
        *ingestion,
        *[F.col("payload").getField(name).alias(f"payload_{name}") for name in payload_fields],
        ((F.unix_micros("ingested_at") - F.unix_micros("event_time")) / 1_000_000).alias("lateness_seconds"),
    )


def snapshot_expectations(event_type: str, versions: dict[int, Contract], rules: Rules) -> list[Expectation]:
    """The snapshot suite of one event type, every bound read from its contracts and the time rules."""
    if not versions or any(contract.event_type != event_type for contract in versions.values()):
        raise ValueError(f"snapshot_expectations: versions must be the non-empty contracts of {event_type!r}")
    expectations: list[Expectation] = [
        *[gx.expectations.ExpectColumnValuesToNotBeNull(column=name) for name in ENVELOPE_FIELDS],
        gx.expectations.ExpectColumnValuesToBeUnique(column="event_id"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="event_type", value_set=[event_type]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="schema_version", value_set=sorted(versions)),
        *[gx.expectations.ExpectColumnValuesToNotBeNull(column=field.name) for field in INGESTION_FIELDS],
        # The producers' rule (schemas.validation): event_time within [ingested_at - lateness, ingested_at + skew].
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="lateness_seconds", min_value=-rules.max_future_skew_seconds, max_value=rules.max_lateness_seconds
        ),
    ]
    specs_by_field: dict[str, list] = {}
    for version in sorted(versions):
        for spec in versions[version].fields:
            specs_by_field.setdefault(spec.name, []).append(spec)
    for name, specs in specs_by_field.items():
        column = f"payload_{name}"
        # One column holds every version's rows, so a bound holds only if every version declaring the field sets it.
        if len(specs) == len(versions) and all(spec.required for spec in specs):
            expectations.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
        if all(spec.enum is not None for spec in specs):
            allowed = list(dict.fromkeys(value for spec in specs for value in spec.enum))
            expectations.append(gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=allowed))
        low = min(spec.minimum for spec in specs) if all(spec.minimum is not None for spec in specs) else None
        high = max(spec.maximum for spec in specs) if all(spec.maximum is not None for spec in specs) else None
        if low is not None or high is not None:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
            )
    return expectations


def view_frame_expectations(
    view: View, metric_kinds: dict[str, str], expected_counts: dict[str, int]
) -> list[Expectation]:
    """The suite of one batch view frame (view, key, window_start, <metric>...); `expected_counts` are totals counted
    independently from the snapshot, which each named count metric's column must sum to exactly."""
    metrics = {metric.name: metric for metric in view.metrics}
    where = f"view_frame_expectations({view.name!r})"
    if set(metric_kinds) != set(metrics):
        raise ValueError(f"{where}: metric_kinds names {sorted(metric_kinds)}; the view has {sorted(metrics)}")
    counts = [name for name, metric in metrics.items() if metric.aggregate == "count"]
    unknown = sorted(set(expected_counts) - set(counts))
    if unknown:
        raise ValueError(f"{where}: expected_counts names {unknown}, not count metrics (those are {counts})")
    bad = {name: total for name, total in expected_counts.items() if not isinstance(total, int) or total < 0}
    if bad:
        raise ValueError(f"{where}: expected counts must be integers >= 0, got {bad}")
    expectations: list[Expectation] = [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="key"),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="window_start"),
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["key", "window_start"]),
    ]
    expectations += [gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=0) for name in counts]
    for name, total in expected_counts.items():
        if total == 0:
            # Spark sums no rows to null, which GE fails; with counts >= 0, "sums to 0" is "every count is 0".
            expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=0, max_value=0))
        else:
            expectations.append(
                gx.expectations.ExpectColumnSumToBeBetween(column=name, min_value=total, max_value=total)
            )
    return expectations


def validate(frame: DataFrame, suite: str, expectations: list[Expectation], project_dir: str) -> QualityReport:
    """Run `expectations` as suite `suite` over `frame` in the GE file project at `project_dir`, update its Data Docs
    and report. Safe to call repeatedly and from several processes: each call holds a lock on the project."""
    if not isinstance(frame, DataFrame):
        raise TypeError(f"validate: frame must be a Spark DataFrame, got {type(frame).__name__}")
    if not _SUITE_NAME.match(suite or ""):
        raise ValueError(f"validate: suite {suite!r} must be 1-100 letters, digits, '_' or '-' (GE makes dots folders)")
    if not expectations or not all(isinstance(each, Expectation) for each in expectations):
        raise ValueError(f"validate: suite {suite!r} needs a non-empty list of GE expectations")
    was_cached = frame.is_cached
    root = Path(project_dir).resolve()
    try:
        with _project_lock(root):
            context = gx.get_context(mode="file", project_root_dir=root)
            # GE draws tqdm bars unless the project turns them off; they would fill the job's log.
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            # Pass or fail first: GE's default (SUMMARY) spends a Spark query per expectation collecting example rows
            # even when there are none, half of a small snapshot's validation. A failed suite runs again for them
            # (both runs are kept in the Data Docs).
            result = _checkpoint(context, suite, expectations, suite, ResultFormat.BOOLEAN_ONLY).run(batch_parameters={"dataframe": frame})
            if not result.success:
                details = _checkpoint(context, suite, expectations, f"{suite}-details", ResultFormat.SUMMARY)
                result = details.run(batch_parameters={"dataframe": frame})
            docs_index = _docs_index(context)
    finally:
        if not was_cached:
            frame.unpersist()  # GE's Spark engine persists every frame it validates and never lets go
    (run,) = result.run_results.values()
    failures = tuple(_finding(each) for each in run.results if not each.success)
    return QualityReport(suite, run.success, run.statistics["evaluated_expectations"], failures, docs_index)


@contextmanager
def _project_lock(root: Path) -> Iterator[None]:
    # GE rewrites great_expectations.yml whole when it adds a datasource or asset: two unlocked processes lose edits.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".braid-quality.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _checkpoint(context, suite_name: str, expectations: list[Expectation], name: str, result_format: ResultFormat) -> gx.Checkpoint:
    """A checkpoint of the suite, reusing what the project already holds; a changed suite is rewritten in place."""
    # Fetch before add everywhere: GE's add raises on an existing name, and add_or_update replaces a datasource
    # together with all its assets.
    try:
        datasource = context.data_sources.get(_DATASOURCE)
    except LookupError:
        datasource = context.data_sources.add_spark(_DATASOURCE)
    try:
        asset = datasource.get_asset(suite_name)  # one asset per suite: a checkpoint passes one frame to all its data
    except LookupError:
        asset = datasource.add_dataframe_asset(suite_name)
    try:
        batch_definition = asset.get_batch_definition(_BATCH_DEFINITION)
    except LookupError:
        batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION)

    if suite_name in {each.name for each in context.suites.all()}:
        suite = context.suites.get(suite_name)
    else:
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    if _identities(suite.expectations) != _identities(expectations):
        # Copies: GE binds an added expectation to its suite (sets its id), and the caller may reuse the list.
        suite.expectations = [copy.copy(each) for each in expectations]
        suite.save()

    # The stored definitions refer to the suite by id, so fetching them after the save above sees it fresh.
    if suite_name in {each.name for each in context.validation_definitions.all()}:
        definition = context.validation_definitions.get(suite_name)
    else:
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
        )
    if name in {each.name for each in context.checkpoints.all()}:
        checkpoint = context.checkpoints.get(name)
        if getattr(checkpoint.result_format, "value", checkpoint.result_format) != result_format.value:
            checkpoint.result_format = result_format  # a project from before the format was chosen
            checkpoint.save()
        return checkpoint
    docs = gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")
    return context.checkpoints.add(
        gx.Checkpoint(name=name, validation_definitions=[definition], actions=[docs], result_format=result_format)
    )


def _identities(expectations) -> set[str]:
    def identity(expectation: Expectation) -> str:
        configuration = expectation.configuration.to_json_dict()
        return json.dumps([configuration["type"], configuration["kwargs"]], sort_keys=True, default=str)

    return {identity(each) for each in expectations}


def _docs_index(context) -> str | None:
    for site in context.get_docs_sites_urls():
        url = site.get("site_url") or ""
        path = Path(unquote(urlparse(url).path)) if url.startswith("file://") else None
        if path is not None and path.is_file():
            return str(path)
    return None


def _finding(result) -> Finding:
    configuration = result.expectation_config
    kwargs = configuration.kwargs
    column = kwargs.get("column") or (",".join(kwargs["column_list"]) if kwargs.get("column_list") else None)
    return Finding(configuration.type, column, _detail(result))


def _detail(result) -> str:
    outcome = dict(result.result or {})
    if not outcome:  # the metric never ran: a wrong column or type, not a judgement of the data
        info = result.exception_info or {}
        # Either one {exception_message: ...} or, when metrics failed, one such dict per metric id.
        nested = [each.get("exception_message") for each in info.values() if isinstance(each, dict)]
        message = next((m for m in [info.get("exception_message"), *nested] if m), "no result and no error message")
        return f"could not run: {message[:200]}"
    if "unexpected_count" in outcome:
        shown = list(dict.fromkeys(_shown(value) for value in outcome.get("partial_unexpected_list", [])))
        examples = f", e.g. {', '.join(shown[:_EXAMPLES])}" if shown else ""
        return f"{outcome['unexpected_count']} of {outcome.get('element_count')} rows unexpected{examples}"
    return f"observed {outcome.get('observed_value')!r}"


def _shown(value) -> str:
    if isinstance(value, dict):  # a compound expectation's row
        return "(" + ", ".join(_shown(each) for each in value.values()) + ")"
    return value.isoformat() if isinstance(value, datetime) else repr(value)
