"""View keys as the serving layer spells them: exactly as Spark's to_json wrote them, control characters included."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from braid.layout import view_key_text
from tests.speed.oracle import jackson_array


@pytest.mark.parametrize(
    ("values", "stored"),
    [
        (["DE", "mobile"], '["DE","mobile"]'),
        (["café/😀"], '["café/😀"]'),
        (["x'; DROP TABLE speed_views; --"], '["x\'; DROP TABLE speed_views; --"]'),
        (['say "hi"\\'], '["say \\"hi\\"\\\\"]'),
        (["\n\t\r\b\f"], '["\\n\\t\\r\\b\\f"]'),
        (["\x00\x0b\x1f\x7f"], '["\\u0000\\u000B\\u001F\x7f"]'),
        (["\\u001f is text"], '["\\\\u001f is text"]'),
        (["\\\x1f"], '["\\\\\\u001F"]'),
    ],
    ids=["plain", "non-ASCII as is", "CQL text", "quotes and backslash", "short escapes", "control characters upper case", "an escape as text", "backslash then control"],
)
def test_view_key_text_spells_a_key_as_spark_wrote_it(values: list[str], stored: str) -> None:
    assert view_key_text(values) == stored
    assert json.loads(stored) == values


@given(st.lists(st.text(), min_size=1, max_size=3))
def test_view_key_text_agrees_with_the_oracle_s_hand_written_jackson_spelling(values: list[str]) -> None:
    assert view_key_text(values) == jackson_array(values)
