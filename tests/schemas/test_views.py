"""View declarations load from data and are checked against the contracts they read."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from schemas.contracts import ContractError, default_contracts
from schemas.views import default_views, grain_seconds, load_views

BASE = json.loads((Path(__file__).parents[2] / "schemas/views/payments_by_merchant.json").read_text())


def test_default_views() -> None:
    views = default_views()
    assert set(views) == {"payments_by_merchant", "page_views_by_url", "page_views_by_country", "declined_payments_by_country"}
    payments = views["payments_by_merchant"]
    assert payments.dimensions == ("merchant_id", "currency")
    assert payments.grain_seconds == 60
    assert [(m.name, m.aggregate, m.field) for m in payments.metrics] == [
        ("payments", "count", None), ("revenue", "sum", "amount"), ("min_amount", "min", "amount"), ("max_amount", "max", "amount"),
    ]  # fmt: skip


@pytest.mark.parametrize(("grain", "seconds"), [("1m", 60), ("5m", 300), ("1h", 3600), ("1d", 86400)])
def test_grain_seconds(grain: str, seconds: int) -> None:
    assert grain_seconds(grain) == seconds


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v: v.update(source=["refund"]), "names no known event type"),
        (lambda v: v.update(dimensions=["shop"]), "dimension 'shop' is not a payload field"),
        (lambda v: v.update(dimensions=["method"]), "dimension 'method' must be a required"),
        (lambda v: v.update(grain="7m"), "grain '7m' is not one of rules.toml's grains"),
        (lambda v: v["metrics"].update(bad={"aggregate": "median", "field": "amount"}), "metric 'bad' must have"),
        (lambda v: v["metrics"].update(bad={"aggregate": "sum", "field": "currency"}), "aggregates 'currency', which is string"),
        (lambda v: v.update(filter=[{"field": "status", "op": "==", "value": "paid"}]), "filter value 'paid' can never match"),
        (lambda v: v.update(filter=[{"field": "status", "op": "~", "value": "x"}]), "filter operator '~'"),
    ],
)
def test_bad_views_are_refused_with_the_reason(tmp_path: Path, mutate, message: str) -> None:
    view = copy.deepcopy(BASE)
    mutate(view)
    (tmp_path / "payments_by_merchant.json").write_text(json.dumps(view))
    with pytest.raises(ContractError, match=message):
        load_views(tmp_path, default_contracts())


def test_dimension_bounds_come_from_every_source_version() -> None:
    # The oracle reads the contract files themselves: the largest maxLength over the versions, None where one has none.
    contracts = Path(__file__).parents[2] / "schemas/contracts"
    for view in default_views().values():
        expected = []
        for dimension in view.dimensions:
            specs = [
                json.loads(path.read_text())["payload"]["properties"][dimension]
                for source in view.sources
                for path in sorted((contracts / source).glob("v*.json"))
            ]
            lengths = [spec.get("maxLength") for spec in specs] if specs[0]["type"] == "string" else [None]
            expected.append(None if None in lengths else max(lengths))
        assert view.dimension_max_lengths == tuple(expected), view.name
    assert default_views()["page_views_by_url"].dimension_max_lengths == (2048,)
