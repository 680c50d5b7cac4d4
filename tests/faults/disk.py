"""A disk that refuses writes, for the fault suite and the storage-error tests."""

from __future__ import annotations

import os
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

# What a refused write reports: a read-only mount as root, the permission bits as anyone else.
READ_ONLY = "Read-only file system" if os.geteuid() == 0 else "Permission denied"


@contextmanager
def unwritable(path: Path):
    """`path` read-only as a failed or remounted disk is (writes fail with EROFS): a read-only bind mount over it. A
    user other than root gets the permission bits taken away instead (root ignores those)."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
            yield
        finally:
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], check=True)  # busy: detach now, open files keep the old view
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if p.is_dir()}
        for directory, mode in modes.items():
            directory.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            for directory, mode in modes.items():
                directory.chmod(mode)
