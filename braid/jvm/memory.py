"""What a running JVM keeps: its live heap (what a full collection leaves) and its resident memory outside the Java heap.

For the soak. A JVM's resident set alone follows G1's sizing policy, not the data the program keeps: G1 commits heap
as the load peaks and hands it back after a concurrent cycle, so the Spark driver's RSS swings by a gigabyte under a
fixed -Xmx (3.2-4.7 GB under 4 GiB, measured) with nothing leaking. A leak shows in one of two places: objects the
program keeps reachable (the heap a full collection leaves) or native memory (metaspace, code cache, threads, direct
buffers, native libraries: everything resident outside the heap's address range). Both are read here: the first with
the JDK's `jcmd` (GC.run, then GC.heap_info), the second from /proc/<pid>/smaps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from braid.errors import BraidError

# G1's line of `jcmd <pid> GC.heap_info`: " garbage-first heap   total 389120K, used 207739K [0x..c0000000, 0x..0100000000)"
_HEAP_LINE = re.compile(r"heap\s+total (\d+)K, used (\d+)K \[(0x[0-9a-fA-F]+), (0x[0-9a-fA-F]+)\)")


@dataclass(frozen=True)
class HeapInfo:
    committed_kib: int
    used_kib: int
    start: int  # the heap's reserved address range, [start, end)
    end: int


def parse_heap_info(text: str) -> HeapInfo:
    match = _HEAP_LINE.search(text)
    if match is None:
        raise BraidError(f"jcmd GC.heap_info: no heap line in its answer: {text.strip()[:200]!r}")
    committed, used, start, end = match.groups()
    return HeapInfo(int(committed), int(used), int(start, 16), int(end, 16))


def jcmd(pid: int, *command: str, timeout: float = 120) -> str:
    """`jcmd <pid> <command>` with the JDK the process runs on (the attach protocol wants a matching version)."""
    try:
        tool = Path(psutil.Process(pid).exe()).with_name("jcmd")
    except psutil.Error as error:
        raise BraidError(f"jcmd: process {pid} is gone: {error}") from error
    found = str(tool) if tool.exists() else shutil.which("jcmd")
    if found is None:
        raise BraidError(f"jcmd: not next to {tool.parent / 'java'} nor on PATH; a JDK (not a JRE) is needed")
    done = subprocess.run([found, str(pid), *command], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BraidError(f"jcmd {pid} {' '.join(command)} exited with {done.returncode}: {(done.stdout + done.stderr).strip()[:200]}")
    return done.stdout


def heap_info(pid: int) -> HeapInfo:
    return parse_heap_info(jcmd(pid, "GC.heap_info"))


def live_heap(pid: int) -> HeapInfo:
    """The heap after a full collection asked of the JVM (System.gc(): a stop-the-world pause of the whole heap)."""
    jcmd(pid, "GC.run")
    return heap_info(pid)


def resident_outside(pid: int, start: int, end: int) -> int:
    """Bytes resident in the process outside the address range [start, end)."""
    total = 0
    for mapping in psutil.Process(pid).memory_maps(grouped=False):
        low, high = (int(bound, 16) for bound in mapping.addr.split("-"))
        if not (low >= start and high <= end):
            total += mapping.rss
    return total


# A row of `jcmd <pid> GC.class_histogram`: "   1:   21844   137625376  [J (java.base@17.0.15)"
_HISTOGRAM_ROW = re.compile(r"^\s*\d+:\s+(\d+)\s+(\d+)\s+(\S+)", re.MULTILINE)


def parse_class_histogram(text: str) -> dict[str, tuple[int, int]]:
    """class name -> (instances, bytes), from the answer of GC.class_histogram."""
    rows = {name: (int(count), int(size)) for count, size, name in _HISTOGRAM_ROW.findall(text)}
    if not rows:
        raise BraidError(f"jcmd GC.class_histogram: no rows in its answer: {text.strip()[:200]!r}")
    return rows


def class_histogram(pid: int) -> dict[str, tuple[int, int]]:
    """The live objects per class (the JVM runs a full collection first: a pause like GC.run's)."""
    return parse_class_histogram(jcmd(pid, "GC.class_histogram"))


def histogram_growth(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], top: int = 15) -> dict[str, Any]:
    """The live heap's change between two histograms in all, and the `top` classes whose bytes grew most."""
    grown = sorted(
        ((after[name][1] - before.get(name, (0, 0))[1], after[name][0] - before.get(name, (0, 0))[0], name) for name in after),
        reverse=True,
    )
    return {
        "bytes": sum(size for _, size in after.values()) - sum(size for _, size in before.values()),
        "classes": [{"class": name, "bytes": size, "instances": count} for size, count, name in grown[:top] if size > 0],
    }
