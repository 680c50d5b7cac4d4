"""Errors that reach a user. The CLI prints their message as one line (or a line plus a log tail) and exits 2."""

import os
import re
from pathlib import Path


class BraidError(RuntimeError):
    """A failure the user can act on; the message says what went wrong and where."""


# How the JVM (Hadoop, Delta) words a write the disk refused, e.g. "java.io.FileNotFoundException: /lake/t/part-0.parquet
# (Read-only file system)" or "[DELTA_CANNOT_CREATE_LOG_PATH] Cannot create file:/lake/t/_delta_log".
_REFUSED_WRITE = re.compile(r"(?:file:)?(/[^\s()]+) \((Read-only file system|Permission denied|No space left on device|Disk quota exceeded)\)")
_REFUSED_CREATE = re.compile(r"(?:Cannot create|Mkdirs failed to create) (?:file:)?(/\S+)")


def storage_failure(error: BaseException) -> str | None:
    """One line for a write the disk refused (read-only, no permission, full), naming the path; None otherwise. A
    Spark job's error buries it in a stack trace, often under a generic first line."""
    text = str(error)
    found = _REFUSED_WRITE.search(text)
    if found:
        return f"storage: cannot write {found.group(1)} ({found.group(2)})"
    found = _REFUSED_CREATE.search(text)
    if found:
        return f"storage: cannot create {found.group(1)} ({_why_unwritable(Path(found.group(1)))})"
    return None


def _why_unwritable(path: Path) -> str:
    """Why a directory could not be made: asked of the nearest existing parent, as the disk answers now."""
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        return "Read-only file system"
    return "Permission denied" if not os.access(parent, os.W_OK) else "the disk refused it"
