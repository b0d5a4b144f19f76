"""Start and stop the servers under test, each in its own process group, and meter their CPU."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU used so far by every live process of the server's process group."""
        return group_cpu_seconds(self.process.pid)


def launch_server(
    name: str,
    command: list[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    cpus: str | None = None,
) -> Server:
    """Start `command` in a new session (its own process group), without waiting.

    The caller records the server before waiting for it (`wait_ready`), so that an
    interrupt during start-up still stops it.
    """
    if port_open(port):
        raise RuntimeError(f"port {port} is already in use: stop whatever listens there")
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    with log.open("wb") as log_file:
        # stdout (the access log in production) is thrown away; stderr is kept for diagnosis.
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    return Server(name, port, process, log)


def launch_worker(command: list[str], *, env: Mapping[str, str], cwd: Path, log: Path) -> Server:
    """A background process with no port (`mercato worker`), in its own process group."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    return Server(Path(command[-1]).name, 0, process, log)


def wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{tail}")
        if _ready(server.base_url + "/health/ready"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} was not ready within {timeout:.0f}s (log: {server.log})")


def stop_server(server: Server, timeout: float = 15.0) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left."""
    pgid = server.process.pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(pgid):
            server.process.poll()
            time.sleep(0.1)
        if not _group_alive(pgid):
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _proc_stats() -> Iterable[tuple[int, str, int, float]]:
    """(pid, command name, process group, CPU seconds) of every live process (no zombies)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # Fields after the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15).
        if fields[0] in ("Z", "X"):
            continue
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        yield int(entry.name), name, int(fields[2]), cpu


def _group_alive(pgid: int) -> bool:
    return any(group == pgid for _, _, group, _ in _proc_stats())


def group_cpu_seconds(pgid: int) -> float:
    return sum(cpu for _, _, group, cpu in _proc_stats() if group == pgid)


# The benchmark database (bench/run.py sets it): on a machine shared with other work, only
# the backends connected to it are counted. None counts every PostgreSQL process.
POSTGRES_DATABASE: str | None = None


def postgres_cpu_by_pid() -> dict[int, float]:
    """CPU seconds of PostgreSQL processes (backends come and go: diff per pid)."""
    return {
        pid: cpu
        for pid, name, _, cpu in _proc_stats()
        if name.startswith("postgres") and _serves_bench_database(pid)
    }


def _serves_bench_database(pid: int) -> bool:
    if POSTGRES_DATABASE is None:
        return True
    try:
        # A backend's title: "postgres: 15/main: <user> <database> <client> <state>".
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return False
    return len(title) > 3 and title[3].decode(errors="replace") == POSTGRES_DATABASE


def postgres_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
