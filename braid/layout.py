"""Where a view's rows live in Cassandra (rules.toml [layout]): the same arithmetic for the Spark writers and the
Python readers, so that a key written by one layer is found by the other."""

from __future__ import annotations

import json
import re
import zlib
from datetime import UTC, datetime

from pyspark.sql import Column
from pyspark.sql import functions as F


_ESCAPE = re.compile(r"(\\\\)|\\u([0-9a-f]{4})")


def view_key_text(values: list[str]) -> str:
    r"""A view key as stored: the JSON array Spark's to_json writes (braid.view_compiler.view_key). No spaces, non-ASCII
    as is, and a control character escaped as Jackson escapes it, in upper case (\u001F), where Python's json writes
    \u001f: with Python's spelling, a key holding one would never be found."""
    text = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
    return _ESCAPE.sub(lambda match: match[1] or "\\u" + match[2].upper(), text)  # an escaped backslash stays as it is


def shard_of(key: str, shards: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % shards


def shard_column(key: Column, shards: int) -> Column:
    """Spark's crc32 is zlib's (unsigned, over the UTF-8 bytes): the column twin of `shard_of`."""
    return F.pmod(F.crc32(key.cast("binary")), F.lit(shards)).cast("int")


def span_seconds(grain_seconds: int, span_windows: int) -> int:
    return grain_seconds * span_windows


def span_start(window_start: datetime, grain_seconds: int, span_windows: int) -> datetime:
    span = span_seconds(grain_seconds, span_windows)
    seconds = int(window_start.timestamp())
    return datetime.fromtimestamp(seconds - seconds % span, UTC)


def span_starts(start: datetime, end: datetime, grain_seconds: int, span_windows: int) -> list[datetime]:
    """Every span that holds a window starting in [start, end)."""
    span = span_seconds(grain_seconds, span_windows)
    first = int(span_start(start, grain_seconds, span_windows).timestamp())
    return [datetime.fromtimestamp(s, UTC) for s in range(first, int(end.timestamp()), span)]
