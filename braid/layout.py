"""Where a view's rows live in Cassandra (rules.toml [layout]): the same arithmetic for the Spark writers and the
Python readers, so that a key written by one layer is found by the other."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

from pyspark.sql import Column
from pyspark.sql import functions as F


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
