"""A write the disk refused, as the JVM words it deep in a stack trace, becomes one line naming the path and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from braid.errors import storage_failure
from tests.faults.disk import READ_ONLY, unwritable

TRACE = """An error occurred while calling o59.save.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 1.0 failed 1 times, most recent failure: \
Lost task 0.0 in stage 1.0 (TID 1) (192.0.2.2 executor driver): java.io.FileNotFoundException: \
/lake/master/payment/part-00000-b044.snappy.parquet ({reason})
\tat java.base/java.io.FileOutputStream.open0(Native Method)"""


@pytest.mark.parametrize("reason", ["Read-only file system", "Permission denied", "No space left on device"])
def test_a_refused_file_write_names_the_file_and_the_reason(reason: str) -> None:
    assert storage_failure(Exception(TRACE.format(reason=reason))) == f"storage: cannot write /lake/master/payment/part-00000-b044.snappy.parquet ({reason})"


def test_a_directory_delta_could_not_create_is_explained_by_the_disk_as_it_is_now(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    error = Exception(f"org.apache.spark.sql.delta.DeltaIOException: [DELTA_CANNOT_CREATE_LOG_PATH] Cannot create file:{lake}/views/v/_delta_log\n\tat x")
    assert storage_failure(error) == f"storage: cannot create {lake}/views/v/_delta_log (the disk refused it)"  # writable now
    with unwritable(lake):
        assert storage_failure(error) == f"storage: cannot create {lake}/views/v/_delta_log ({READ_ONLY})"

def test_other_errors_are_not_mistaken_for_storage() -> None:
    assert storage_failure(Exception("[DELTA_CONCURRENT_APPEND] Files were added to /lake/master (Permission to retry)")) is None
    assert storage_failure(ValueError("bad value")) is None
