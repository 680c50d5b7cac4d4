"""The batch layer's check that the lake takes writes, made before a Spark driver starts (no service needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.delta_io import probe_writable
from braid.errors import BraidError


def test_a_writable_lake_passes_and_keeps_nothing_of_the_probe(tmp_path: Path) -> None:
    probe_writable(str(tmp_path / "lake"))
    assert list((tmp_path / "lake" / "views").iterdir()) == []
    probe_writable(f"file:{tmp_path / 'other'}")  # Spark's spelling of a local path
    assert (tmp_path / "other" / "views").is_dir()


def test_a_lake_that_refuses_the_views_folder_is_one_line_naming_the_path(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "views").write_text("a file where the views folder belongs")
    with pytest.raises(BraidError, match=rf"^storage: cannot create {lake}/views/\.braid-write-probe-\d+ \(File exists\)$"):
        probe_writable(str(lake))


def test_a_lake_behind_a_uri_is_left_to_spark(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    probe_writable("s3a://bucket/lake")
    assert list(tmp_path.iterdir()) == []
