"""braid.jvm.memory against a real JVM that keeps a known amount on its heap and outside it: the live heap after a
full collection counts what stays reachable and not the garbage, and the memory outside the heap counts a touched
direct buffer and not the heap's pages."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from braid.errors import BraidError
from braid.jvm import java_executable
from braid.jvm.memory import class_histogram, heap_info, histogram_growth, live_heap, parse_class_histogram, parse_heap_info, resident_outside

MIB = 2**20
KEPT, GARBAGE, NATIVE = 200, 300, 150  # MiB

# Keeps KEPT MiB reachable on the heap, drops GARBAGE MiB, fills a NATIVE MiB direct buffer, then waits.
PROGRAM = f"""
import java.nio.ByteBuffer;
public class Hold {{
    static byte[][] kept = new byte[{KEPT}][];
    static ByteBuffer nativeBuffer;
    public static void main(String[] args) throws Exception {{
        for (int i = 0; i < {KEPT}; i++) {{ kept[i] = new byte[1 << 20]; java.util.Arrays.fill(kept[i], (byte) 1); }}
        for (int i = 0; i < {GARBAGE}; i++) {{ byte[] dropped = new byte[1 << 20]; java.util.Arrays.fill(dropped, (byte) 2); }}
        nativeBuffer = ByteBuffer.allocateDirect({NATIVE} << 20);
        for (int i = 0; i < nativeBuffer.capacity(); i += 4096) nativeBuffer.put(i, (byte) 3);
        System.out.println("ready");
        System.out.flush();
        Thread.sleep(600_000);
    }}
}}
"""


@pytest.fixture(scope="module")
def holder(tmp_path_factory):
    source = tmp_path_factory.mktemp("jvm") / "Hold.java"
    source.write_text(PROGRAM)
    # regions of 4 MiB: a 1 MiB array is an ordinary object there, not a humongous one (a region of its own)
    process = subprocess.Popen([str(java_executable(None)), "-Xmx1g", "-XX:G1HeapRegionSize=4m", str(source)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout.readline().strip() == "ready"
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_the_live_heap_is_what_stays_reachable(holder) -> None:
    info = live_heap(holder)
    used = info.used_kib * 1024 / MIB
    # the kept arrays and the JVM's own objects (tens of MiB at most); the dropped 300 MiB are gone
    assert KEPT <= used < KEPT + 60, used
    assert info.committed_kib * 1024 >= info.used_kib * 1024 and info.end - info.start == 1024 * MIB


def test_memory_outside_the_heap_counts_the_direct_buffer_not_the_heap(holder) -> None:
    info = heap_info(holder)
    outside = resident_outside(holder, info.start, info.end) / MIB
    whole = psutil.Process(holder).memory_info().rss / MIB
    assert outside >= NATIVE, (outside, whole)
    assert outside <= whole - KEPT, (outside, whole)  # the kept arrays are resident, inside the heap's range


def test_a_heap_line_is_parsed_and_an_answer_without_one_is_an_error() -> None:
    text = """12345:
 garbage-first heap   total 4194304K, used 523456K [0x0000000700000000, 0x0000000800000000)
  region size 2048K, 12 young (24576K), 2 survivors (4096K)
 Metaspace       used 102400K, committed 103424K, reserved 1179648K
"""
    info = parse_heap_info(text)
    assert (info.committed_kib, info.used_kib, info.start, info.end) == (4194304, 523456, 0x700000000, 0x800000000)
    with pytest.raises(BraidError, match="no heap line"):
        parse_heap_info("12345:\nCommand executed successfully\n")


def test_a_process_that_is_gone_is_an_error(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    time.sleep(0.1)
    with pytest.raises(BraidError, match="is gone"):
        heap_info(finished.pid)


def test_the_class_histogram_counts_the_kept_arrays_and_not_the_garbage(holder) -> None:
    byte_arrays, size = class_histogram(holder)["[B"]
    assert KEPT * MIB <= size < (KEPT + 60) * MIB and byte_arrays >= KEPT, (byte_arrays, size / MIB)


def test_histogram_rows_are_parsed_and_growth_is_ranked_by_bytes() -> None:
    text = """12345:
 num     #instances         #bytes  class name (module)
-------------------------------------------------------
   1:         21844      137625376  [J (java.base@17.0.15)
   2:           300         979872  org.apache.spark.sql.execution.ui.SQLPlanMetric
Total        22144      138605248
"""
    before = parse_class_histogram(text)
    assert before == {"[J": (21844, 137625376), "org.apache.spark.sql.execution.ui.SQLPlanMetric": (300, 979872)}
    after = {"[J": (100, 1000), "org.apache.spark.sql.execution.ui.SQLPlanMetric": (900, 2939616), "java.lang.String": (10, 240)}
    assert histogram_growth(before, after) == {
        "bytes": 1000 + 2939616 + 240 - 137625376 - 979872,
        "classes": [
            {"class": "org.apache.spark.sql.execution.ui.SQLPlanMetric", "bytes": 1959744, "instances": 600},
            {"class": "java.lang.String", "bytes": 240, "instances": 10},
        ],  # [J shrank: not listed
    }
    with pytest.raises(BraidError, match="no rows"):
        parse_class_histogram("12345:\nCommand executed successfully\n")
