"""The view query's offset log, read back: each micro-batch's Kafka offset range and timestamp.

Spark writes `offsets/N` (the batch's end offsets and its timestamp) before it runs batch N, and a restarted query
replays N with exactly those; `commits/N` follows once the batch's function returned. The archive (`speed/archive.py`)
reads it to rebuild a micro-batch it has not committed to Delta yet, with the same records and the same timestamp, so
the same handoff bucket and the same first copies as the view path saw. Files are read through Hadoop's file system,
so a checkpoint on object storage works as on local disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyspark.sql import SparkSession

from braid.errors import BraidError


@dataclass(frozen=True)
class LoggedBatch:
    batch_id: int
    timestamp_ms: int
    start: dict[int, int]  # Kafka partition -> first offset of the batch
    end: dict[int, int]  # Kafka partition -> offset after the batch's last record


class OffsetLog:
    def __init__(self, spark: SparkSession, checkpoint: str, topic: str) -> None:
        self._spark = spark
        self._checkpoint = checkpoint.rstrip("/")
        self._topic = topic
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(self._checkpoint).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def _lines(self, relative: str) -> list[str] | None:
        path = self._path(f"{self._checkpoint}/{relative}")
        if not self._fs.exists(path):
            return None
        stream = self._fs.open(path)
        try:
            reader = self._spark.sparkContext._jvm.java.io.BufferedReader(
                self._spark.sparkContext._jvm.java.io.InputStreamReader(stream, "UTF-8")
            )
            lines = []
            while (line := reader.readLine()) is not None:
                lines.append(line)
            return lines
        finally:
            stream.close()

    def _ids(self, folder: str) -> list[int]:
        path = self._path(f"{self._checkpoint}/{folder}")
        if not self._fs.exists(path):
            return []
        return sorted(int(status.getPath().getName()) for status in self._fs.listStatus(path) if status.getPath().getName().isdigit())

    def last_committed(self) -> int | None:
        """The newest batch whose function returned (Spark will not run it again)."""
        ids = self._ids("commits")
        return ids[-1] if ids else None

    def last_planned(self) -> int | None:
        """The newest batch Spark has fixed the offsets of (it may not have run yet)."""
        ids = self._ids("offsets")
        return ids[-1] if ids else None

    def _end_offsets(self, batch_id: int) -> tuple[int, dict[int, int]]:
        lines = self._lines(f"offsets/{batch_id}")
        if lines is None or len(lines) < 3:
            raise BraidError(f"speed: the offset log has no batch {batch_id} in {self._checkpoint}/offsets (purged? see spark.sql.streaming.minBatchesToRetain)")
        metadata = json.loads(lines[1])
        return int(metadata["batchTimestampMs"]), self._topic_offsets(lines[2])

    def _topic_offsets(self, line: str) -> dict[int, int]:
        return {int(partition): int(offset) for partition, offset in json.loads(line).get(self._topic, {}).items()}

    def timestamp_ms(self, batch_id: int) -> int:
        """The timestamp Spark fixed for micro-batch `batch_id` (its `current_timestamp()`)."""
        return self._end_offsets(batch_id)[0]

    def batch(self, batch_id: int) -> LoggedBatch:
        timestamp_ms, end = self._end_offsets(batch_id)
        if batch_id > 0:
            _, start = self._end_offsets(batch_id - 1)
        else:
            # The Kafka source writes the offsets it started from once, after a version marker.
            lines = self._lines("sources/0/0") or []
            body = next((line for line in lines if line.lstrip().startswith("{")), None)
            if body is None:
                raise BraidError(f"speed: the query's starting offsets are missing from {self._checkpoint}/sources/0/0")
            start = self._topic_offsets(body)
        return LoggedBatch(batch_id, timestamp_ms, {p: start.get(p, 0) for p in end}, end)

    def groups(self) -> list[int]:
        """The archive's group manifests (`archive/N`, N the group's last batch), oldest first."""
        return self._ids("archive")

    def read_group(self, last: int) -> dict:
        return json.loads("".join(self._lines(f"archive/{last}") or ["{}"]))

    def write_group(self, last: int, payload: dict) -> None:
        """A new manifest, written aside and then renamed: a reader sees all of it or none."""
        temporary = self._path(f"{self._checkpoint}/archive/.{last}.tmp")
        stream = self._fs.create(temporary, True)
        try:
            stream.write(bytearray(json.dumps(payload, sort_keys=True).encode()))
        finally:
            stream.close()
        if not self._fs.rename(temporary, self._path(f"{self._checkpoint}/archive/{last}")):
            raise BraidError(f"speed: could not write the archive manifest {self._checkpoint}/archive/{last}")

    def forget_groups(self, keep: int) -> None:
        for last in self.groups()[:-keep]:
            self._fs.delete(self._path(f"{self._checkpoint}/archive/{last}"), False)
