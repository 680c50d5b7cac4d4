"""Background JVM processes known by a pid file: start, wait until ready, stop gracefully, report.

A pid file alone is not trusted: the pid must be alive *and* its command line must carry the service's marker, so a
stale file whose pid the kernel gave to another program is treated as "not running" and never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from braid.errors import BraidError


@dataclass(frozen=True)
class ServiceSpec:
    """Everything needed to run one local service; built by the service's module from settings."""

    name: str
    address: str
    data_dir: Path
    marker: str  # a string unique to this service's command line (its config path)
    command: list[str]
    ports: dict[str, tuple[str, int]]  # setting name -> (host, port) the service will bind
    prepare: Callable[[], None]
    probe: Callable[[], None]  # raises while the service is not ready
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / f"{self.name}.log"


@dataclass(frozen=True)
class ServiceState:
    name: str
    address: str
    pid: int | None
    up: bool
    data_dir: Path


def running_pid(spec: ServiceSpec) -> int | None:
    try:
        pid = int(spec.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return pid if spec.marker in command_line else None


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def log_tail(spec: ServiceSpec, lines: int = 30) -> str:
    try:
        text = spec.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def launch(spec: ServiceSpec) -> bool:
    """Start the process unless it already runs; returns True when it was started now."""
    if running_pid(spec) is not None:
        return False
    for setting, (host, port) in spec.ports.items():
        if _port_in_use(host, port):
            raise BraidError(
                f"{spec.name}: port {port} on {host} is already in use by another process; stop it or change {setting}"
            )
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    spec.prepare()
    with open(spec.log_file, "ab") as log:
        process = subprocess.Popen(
            spec.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=spec.data_dir,
            env={**os.environ, **spec.env},
            start_new_session=True,  # outlives the CLI that started it; `braid down` stops it
        )
    spec.pid_file.write_text(str(process.pid))
    return True


def wait_ready(spec: ServiceSpec, timeout: float) -> float:
    """Block until the probe passes; returns seconds waited. Fails with the log tail if the process dies or stalls."""
    started = time.monotonic()
    last_error: Exception | None = None
    # Liveness by pid, not by command line: the java launcher may re-exec itself just after the start.
    pid = int(spec.pid_file.read_text())
    while time.monotonic() - started < timeout:
        if not _alive(pid):
            raise BraidError(f"{spec.name}: the process exited while starting; last lines of {spec.log_file}:\n{log_tail(spec)}")
        try:
            spec.probe()
            return time.monotonic() - started
        except Exception as error:  # the probe's client raises many kinds while the service boots
            last_error = error
        time.sleep(0.5)
    raise BraidError(
        f"{spec.name}: not ready after {timeout:.0f}s ({last_error}); last lines of {spec.log_file}:\n{log_tail(spec)}"
    )


def stop(spec: ServiceSpec, timeout: float = 60.0) -> bool:
    """SIGTERM, wait for a clean shutdown, SIGKILL past `timeout`; returns True when something was stopped."""
    pid = running_pid(spec)
    if pid is None:
        spec.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    spec.pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child (tests start services in-process); otherwise just probe.
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def state(spec: ServiceSpec) -> ServiceState:
    pid = running_pid(spec)
    up = False
    if pid is not None:
        try:
            spec.probe()
            up = True
        except Exception:
            up = False
    return ServiceState(spec.name, spec.address, pid, up, spec.data_dir)
