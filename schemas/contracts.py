"""Event contracts: versioned files under `schemas/contracts/<event_type>/v<N>.json`, loaded into one registry.

A contract file declares an event type's payload as JSON Schema (a flat object of string, integer, number, boolean
fields, plus string-to-string maps); the envelope is declared once in `contracts/envelope.json`. Everything else is
derived from these files: the full JSON Schema (`json_schema`), the producers' validator (`schemas.validation`),
Spark's parsing schema and the Delta table schema (`schemas.spark_types`).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS_DIR = Path(__file__).parent
CONTRACTS_DIR = SCHEMAS_DIR / "contracts"
ENVELOPE_FIELDS = ("event_id", "event_type", "schema_version", "event_time", "source")
_SCALAR_TYPES = ("string", "integer", "number", "boolean")
_VERSION_FILE = re.compile(r"^v([1-9]\d*)\.json$")
_ALLOWED_FIELD_KEYWORDS = {
    "type", "description", "enum", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "additionalProperties", "maxProperties",
}  # fmt: skip


class ContractError(ValueError):
    """A contract file is malformed, or a new version breaks compatibility; the message names the file and field."""


@dataclass(frozen=True)
class FieldSpec:
    """One payload field: its JSON type ('string', 'integer', 'number', 'boolean' or 'map') and constraints."""

    name: str
    type: str
    required: bool
    enum: tuple[Any, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_properties: int | None = None
    value_max_length: int | None = None  # maps: the longest value allowed


@dataclass(frozen=True)
class Contract:
    event_type: str
    version: int
    key: str
    description: str
    payload_schema: dict[str, Any] = field(repr=False)
    fields: tuple[FieldSpec, ...] = field(repr=False)
    path: Path | None = field(default=None, repr=False)

    def field(self, name: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.name == name), None)

    def json_schema(self) -> dict[str, Any]:
        """The full JSON Schema (draft 2020-12) of this type and version: the envelope with this payload."""
        schema = json.loads(json.dumps(envelope_schema()))
        schema["title"] = f"{self.event_type} v{self.version}"
        schema["properties"]["event_type"] = {**schema["properties"]["event_type"], "const": self.event_type}
        schema["properties"]["schema_version"] = {**schema["properties"]["schema_version"], "const": self.version}
        schema["properties"]["payload"] = self.payload_schema
        return schema


@cache
def envelope_schema() -> dict[str, Any]:
    return json.loads((CONTRACTS_DIR / "envelope.json").read_text())


@dataclass(frozen=True)
class Rules:
    """The time and size rules of `schemas/rules.toml`."""

    handoff_bucket_seconds: int
    grains: tuple[str, ...]
    max_lateness_seconds: int
    max_future_skew_seconds: int
    max_event_bytes: int
    view_shards: int
    span_windows: int


@cache
def rules(path: Path | None = None) -> Rules:
    """The rules of `path` (settings.rules_file), or of the packaged `schemas/rules.toml` when None. A deployment
    keeps the packaged ones; tests pass a copy with 2-second handoff buckets so that nothing waits for a minute."""
    path = path or SCHEMAS_DIR / "rules.toml"
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ContractError(f"{path}: cannot read the rules ({error})") from error
    return Rules(
        handoff_bucket_seconds=int(data["time"]["handoff_bucket_seconds"]),
        grains=tuple(data["time"]["grains"]),
        max_lateness_seconds=int(data["time"]["max_lateness_hours"]) * 3600,
        max_future_skew_seconds=int(data["time"]["max_future_skew_seconds"]),
        max_event_bytes=int(data["size"]["max_event_bytes"]),
        view_shards=int(data["layout"]["view_shards"]),
        span_windows=int(data["layout"]["span_windows"]),
    )


def _field_spec(where: str, name: str, schema: dict[str, Any], required: bool) -> FieldSpec:
    unknown = set(schema) - _ALLOWED_FIELD_KEYWORDS
    if unknown:
        raise ContractError(f"{where}: field payload.{name} uses {sorted(unknown)}, which Braid contracts do not support")
    kind = schema.get("type")
    if kind == "object":
        values = schema.get("additionalProperties")
        if not isinstance(values, dict) or values.get("type") != "string":
            raise ContractError(f"{where}: field payload.{name} is an object; only string-to-string maps are supported")
        return FieldSpec(name, "map", required, max_properties=schema.get("maxProperties"), value_max_length=values.get("maxLength"))
    if kind not in _SCALAR_TYPES:
        raise ContractError(f"{where}: field payload.{name} has type {kind!r}; expected one of {', '.join(_SCALAR_TYPES)} or a map")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except re.error as error:
            raise ContractError(f"{where}: field payload.{name} has a bad pattern ({error})") from None
    enum = schema.get("enum")
    return FieldSpec(
        name,
        kind,
        required,
        enum=tuple(enum) if enum is not None else None,
        min_length=schema.get("minLength"),
        max_length=schema.get("maxLength"),
        pattern=schema.get("pattern"),
        minimum=schema.get("minimum"),
        maximum=schema.get("maximum"),
    )


def parse_contract(data: dict[str, Any], where: str, path: Path | None = None) -> Contract:
    for key in ("event_type", "version", "key", "payload"):
        if key not in data:
            raise ContractError(f"{where}: missing {key!r}")
    payload = data["payload"]
    if payload.get("type") != "object" or not isinstance(payload.get("properties"), dict):
        raise ContractError(f"{where}: payload must be an object schema with properties")
    if payload.get("additionalProperties") is not False:
        raise ContractError(f"{where}: payload must set additionalProperties to false (unknown fields are rejected)")
    required = payload.get("required", [])
    missing = [name for name in required if name not in payload["properties"]]
    if missing:
        raise ContractError(f"{where}: required field payload.{missing[0]} is not declared in properties")
    fields = tuple(_field_spec(where, name, schema, name in required) for name, schema in payload["properties"].items())
    key = data["key"]
    key_spec = next((spec for spec in fields if spec.name == key), None)
    if key_spec is None or not key_spec.required or key_spec.type != "string":
        raise ContractError(f"{where}: key {key!r} must be a required string field of the payload")
    return Contract(
        event_type=data["event_type"],
        version=int(data["version"]),
        key=key,
        description=data.get("description", ""),
        payload_schema=payload,
        fields=fields,
        path=path,
    )


def load_contracts(directory: Path = CONTRACTS_DIR) -> dict[str, dict[int, Contract]]:
    """Every contract under `directory`, as {event_type: {version: Contract}}; malformed files raise ContractError."""
    registry: dict[str, dict[int, Contract]] = {}
    for type_dir in sorted(path for path in directory.iterdir() if path.is_dir()):
        versions: dict[int, Contract] = {}
        for file in sorted(type_dir.iterdir()):
            match = _VERSION_FILE.match(file.name)
            where = str(file.relative_to(directory.parent)) if directory.parent in file.parents else str(file)
            if not match:
                raise ContractError(f"{where}: contract files are named v<N>.json")
            try:
                data = json.loads(file.read_text())
            except json.JSONDecodeError as error:
                raise ContractError(f"{where}: not valid JSON ({error})") from None
            contract = parse_contract(data, where, file)
            if contract.event_type != type_dir.name:
                raise ContractError(f"{where}: event_type {contract.event_type!r} does not match its folder {type_dir.name!r}")
            if contract.version != int(match[1]):
                raise ContractError(f"{where}: version {contract.version} does not match its file name")
            versions[contract.version] = contract
        if sorted(versions) != list(range(1, len(versions) + 1)):
            raise ContractError(f"{type_dir.name}: versions must run 1, 2, 3... without gaps; found {sorted(versions)}")
        registry[type_dir.name] = versions
    return registry


@cache
def default_contracts() -> dict[str, dict[int, Contract]]:
    return load_contracts()


def latest(registry: dict[str, dict[int, Contract]], event_type: str) -> Contract:
    return registry[event_type][max(registry[event_type])]


def compatibility_problems(old: Contract, new: Contract) -> list[str]:
    """Why `new` is not backward compatible with `old` (empty when it is). Each problem names the field."""
    where = f"{new.event_type} v{new.version}"
    problems = []
    old_fields = {spec.name: spec for spec in old.fields}
    new_fields = {spec.name: spec for spec in new.fields}
    for name, spec in old_fields.items():
        if name not in new_fields:
            if spec.required:
                problems.append(f"{where}: required field payload.{name} of v{old.version} was removed")
            continue
        changed = new_fields[name]
        if changed.type != spec.type:
            problems.append(f"{where}: field payload.{name} changed type from {spec.type} to {changed.type}")
        if changed.required and not spec.required:
            problems.append(f"{where}: field payload.{name} became required (v{old.version} events may lack it)")
    for name, spec in new_fields.items():
        if name not in old_fields and spec.required:
            problems.append(f"{where}: required field payload.{name} was added (v{old.version} events lack it)")
    if new.key != old.key:
        problems.append(f"{where}: key changed from {old.key!r} to {new.key!r} (events of one entity would change partition)")
    return problems


def check_registry(registry: dict[str, dict[int, Contract]]) -> list[str]:
    """Every compatibility problem of every version against every earlier version of its type (transitive)."""
    problems: list[str] = []
    for versions in registry.values():
        ordered = [versions[number] for number in sorted(versions)]
        for index, new in enumerate(ordered):
            for old in ordered[:index]:
                problems.extend(problem for problem in compatibility_problems(old, new) if problem not in problems)
    return problems
