"""Contracts load, derive a valid JSON Schema, and a new version that breaks compatibility is refused by name."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from schemas.contracts import ContractError, check_registry, default_contracts, load_contracts

PAYMENT_V1 = json.loads((Path(__file__).parents[2] / "schemas/contracts/payment/v1.json").read_text())


def test_default_domain_is_payments_and_page_views_with_full_json_schemas() -> None:
    registry = default_contracts()
    assert {name: sorted(versions) for name, versions in registry.items()} == {"page_view": [1, 2], "payment": [1]}
    payment = registry["payment"][1].json_schema()
    jsonschema.Draft202012Validator.check_schema(payment)
    assert set(payment["required"]) == {"event_id", "event_type", "schema_version", "event_time", "source", "payload"}
    assert {"amount", "currency", "merchant_id", "user_id", "status"} <= set(payment["properties"]["payload"]["required"])
    page_view = registry["page_view"][2].json_schema()["properties"]["payload"]
    assert {"url", "user_id", "session_id", "country", "device"} <= set(page_view["required"])
    assert check_registry(registry) == []


def _write(tmp_path: Path, versions: list[dict]) -> Path:
    root = tmp_path / "contracts"
    (root / "payment").mkdir(parents=True)
    for number, contract in enumerate(versions, start=1):
        (root / "payment" / f"v{number}.json").write_text(json.dumps({**contract, "version": number}))
    return root


def _v2(change) -> dict:
    contract = copy.deepcopy(PAYMENT_V1)
    change(contract["payload"])
    return contract


def _add_optional(payload: dict) -> None:
    payload["properties"]["note"] = {"type": "string"}


def _add_required(payload: dict) -> None:
    payload["properties"]["tax"] = {"type": "integer"}
    payload["required"].append("tax")


def _remove_required(payload: dict) -> None:
    del payload["properties"]["merchant_id"]
    payload["required"].remove("merchant_id")


def _change_type(payload: dict) -> None:
    payload["properties"]["amount"] = {"type": "number"}


def _make_required(payload: dict) -> None:
    payload["required"].append("method")


def _remove_optional(payload: dict) -> None:
    del payload["properties"]["method"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_add_optional, None),
        (_remove_optional, None),
        (_add_required, "payment v2: required field payload.tax was added (v1 events lack it)"),
        (_remove_required, "payment v2: required field payload.merchant_id of v1 was removed"),
        (_change_type, "payment v2: field payload.amount changed type from integer to number"),
        (_make_required, "payment v2: field payload.method became required (v1 events may lack it)"),
    ],
)
def test_compatibility_check(tmp_path: Path, change, problem: str | None) -> None:
    root = _write(tmp_path, [PAYMENT_V1, _v2(change)])
    problems = check_registry(load_contracts(root))
    assert problems == ([problem] if problem else [])
    result = subprocess.run(
        [sys.executable, "-m", "braid.cli", "schemas", "check", "--contracts", str(root), "--views", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    if problem:
        assert (result.returncode, result.stderr.strip()) == (2, f"braid: schemas: {problem}")
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("schemas: ok: payment v1/v2")


def test_changing_the_key_is_refused(tmp_path: Path) -> None:
    contract = copy.deepcopy(PAYMENT_V1)
    contract["key"] = "merchant_id"
    problems = check_registry(load_contracts(_write(tmp_path, [PAYMENT_V1, contract])))
    assert problems == ["payment v2: key changed from 'user_id' to 'merchant_id' (events of one entity would change partition)"]


def test_compatibility_is_checked_against_every_earlier_version(tmp_path: Path) -> None:
    v2 = _v2(_remove_optional)
    v3 = copy.deepcopy(v2)
    v3["payload"]["properties"]["method"] = {"type": "integer"}  # v1 had method as a string
    problems = check_registry(load_contracts(_write(tmp_path, [PAYMENT_V1, v2, v3])))
    assert problems == ["payment v3: field payload.method changed type from string to integer"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("key"), "missing 'key'"),
        (lambda c: c.update(key="amount"), "key 'amount' must be a required string field"),
        (lambda c: c["payload"]["properties"].update(tags={"type": "array"}), "payload.tags has type 'array'"),
        (lambda c: c["payload"]["properties"]["amount"].update(multipleOf=5), "payload.amount uses ['multipleOf']"),
        (lambda c: c["payload"].update(additionalProperties=True), "additionalProperties to false"),
        (lambda c: c["payload"]["required"].append("ghost"), "required field payload.ghost is not declared"),
        (lambda c: c.update(event_type="refund"), "event_type 'refund' does not match its folder 'payment'"),
    ],
)
def test_malformed_contract_files_are_named(tmp_path: Path, mutate, message: str) -> None:
    contract = copy.deepcopy(PAYMENT_V1)
    mutate(contract)
    with pytest.raises(ContractError, match=r"payment/v1.json: .*" + re.escape(message)):
        load_contracts(_write(tmp_path, [contract]))


def test_version_gaps_are_refused(tmp_path: Path) -> None:
    root = _write(tmp_path, [PAYMENT_V1])
    (root / "payment" / "v3.json").write_text(json.dumps({**PAYMENT_V1, "version": 3}))
    with pytest.raises(ContractError, match=r"payment: versions must run 1, 2, 3... without gaps; found \[1, 3\]"):
        load_contracts(root)
