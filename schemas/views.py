"""View declarations (`schemas/views/*.json`), checked against the contracts they read.

A view is data: source event types, an optional filter, dimensions (the key), a time grain, and metrics drawn from
mergeable aggregates. Both layers compile these declarations; neither has hand-written view code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from schemas.contracts import Contract, ContractError, default_contracts, rules

VIEWS_DIR = Path(__file__).parent / "views"
AGGREGATES = ("count", "sum", "min", "max")
OPERATORS = ("==", "!=", "in", "not_in", "<", "<=", ">", ">=")
_GRAIN = re.compile(r"^([1-9]\d*)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Metric:
    name: str
    aggregate: str
    field: str | None  # None for count


@dataclass(frozen=True)
class View:
    name: str
    description: str
    sources: tuple[str, ...]
    filter: tuple[Condition, ...]
    dimensions: tuple[str, ...]
    grain: str
    metrics: tuple[Metric, ...]
    # The longest text each dimension can hold, from the contracts (maxLength), so that a query can refuse a longer
    # key without a read; None where a contract sets no bound.
    dimension_max_lengths: tuple[int | None, ...] = ()

    @property
    def grain_seconds(self) -> int:
        return grain_seconds(self.grain)


def grain_seconds(grain: str) -> int:
    match = _GRAIN.match(grain)
    if not match:
        raise ValueError(f"grain {grain!r} is not a number and a unit (s, m, h, d), e.g. 1m")
    return int(match[1]) * _SECONDS[match[2]]


def _payload_field(where: str, contracts: list[Contract], name: str, role: str):
    specs = [contract.field(name) for contract in contracts]
    if any(spec is None for spec in specs):
        raise ContractError(f"{where}: {role} {name!r} is not a payload field of every source version")
    return specs[0]


def parse_view(data: dict[str, Any], where: str, registry: dict[str, dict[int, Contract]]) -> View:
    for key in ("name", "source", "dimensions", "grain", "metrics"):
        if key not in data:
            raise ContractError(f"{where}: missing {key!r}")
    if not _NAME.match(data["name"]):
        raise ContractError(f"{where}: name {data['name']!r} must be lower case letters, digits and _")
    sources = tuple(data["source"])
    unknown = [source for source in sources if source not in registry]
    if not sources or unknown:
        raise ContractError(f"{where}: source {unknown or sources!r} names no known event type")
    contracts = [contract for source in sources for contract in registry[source].values()]
    if data["grain"] not in rules().grains:
        raise ContractError(f"{where}: grain {data['grain']!r} is not one of rules.toml's grains {list(rules().grains)}")
    dimensions = tuple(data["dimensions"])
    max_lengths = []
    for dimension in dimensions:
        spec = _payload_field(where, contracts, dimension, "dimension")
        if spec.type not in ("string", "integer", "boolean") or not spec.required:
            raise ContractError(f"{where}: dimension {dimension!r} must be a required string, integer or boolean field")
        lengths = [contract.field(dimension).max_length for contract in contracts] if spec.type == "string" else [None]
        max_lengths.append(None if None in lengths else max(lengths))
    conditions = []
    for item in data.get("filter", []):
        spec = _payload_field(where, contracts, item.get("field"), "filter field")
        if item.get("op") not in OPERATORS:
            raise ContractError(f"{where}: filter operator {item.get('op')!r} is not one of {OPERATORS}")
        values = item["value"] if item["op"] in ("in", "not_in") else [item["value"]]
        if not isinstance(values, list) or not values:
            raise ContractError(f"{where}: filter {item['field']!r} {item['op']} needs a non-empty list")
        for value in values:
            if spec.enum is not None and value not in spec.enum:
                raise ContractError(f"{where}: filter value {value!r} can never match {item['field']!r} (one of {list(spec.enum)})")
        conditions.append(Condition(item["field"], item["op"], tuple(values) if item["op"] in ("in", "not_in") else item["value"]))
    metrics = []
    for name, metric in data["metrics"].items():
        aggregate = metric.get("aggregate")
        if not _NAME.match(name) or aggregate not in AGGREGATES:
            raise ContractError(f"{where}: metric {name!r} must have a snake_case name and an aggregate in {AGGREGATES}")
        field = metric.get("field")
        if aggregate == "count":
            if field is not None:
                raise ContractError(f"{where}: metric {name!r} counts events and takes no field")
        else:
            spec = _payload_field(where, contracts, field, f"metric {name!r} field")
            if spec.type not in ("integer", "number"):
                raise ContractError(f"{where}: metric {name!r} aggregates {field!r}, which is {spec.type}, not a number")
        metrics.append(Metric(name, aggregate, field))
    if not metrics:
        raise ContractError(f"{where}: a view needs at least one metric")
    return View(data["name"], data.get("description", ""), sources, tuple(conditions), dimensions, data["grain"], tuple(metrics), tuple(max_lengths))


def load_views(directory: Path = VIEWS_DIR, registry: dict[str, dict[int, Contract]] | None = None) -> dict[str, View]:
    registry = registry if registry is not None else default_contracts()
    views: dict[str, View] = {}
    for file in sorted(directory.glob("*.json")):
        where = f"views/{file.name}"
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ContractError(f"{where}: not valid JSON ({error})") from None
        view = parse_view(data, where, registry)
        if view.name in views:
            raise ContractError(f"{where}: a view named {view.name!r} is declared twice")
        if file.stem != view.name:
            raise ContractError(f"{where}: the file of view {view.name!r} must be named {view.name}.json")
        views[view.name] = view
    return views


@cache
def default_views() -> dict[str, View]:
    return load_views()
