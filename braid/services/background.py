"""Braid's own long-running jobs (the speed layer) as background processes, managed like the local services."""

from __future__ import annotations

import sys

from braid.services import process
from braid.services.process import ServiceSpec
from braid.settings import Settings


def speed_spec(settings: Settings) -> ServiceSpec:
    root = settings.service_root / "speed"
    return ServiceSpec(
        name="speed",
        address="-",
        data_dir=root,
        marker="braid.cli speed run",
        command=[sys.executable, "-m", "braid.cli", "speed", "run"],
        ports={},
        prepare=lambda: None,
        probe=lambda: None,
    )


def start_speed(settings: Settings) -> int:
    spec = speed_spec(settings)
    process.launch(spec)
    process.wait_ready(spec, timeout=1.0)  # fails with the log tail if it died at once
    pid = process.running_pid(spec)
    return pid or int(spec.pid_file.read_text())


def stop_speed(settings: Settings, timeout: float = 120.0) -> bool:
    return process.stop(speed_spec(settings), timeout=timeout)
