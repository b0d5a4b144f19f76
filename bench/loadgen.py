"""Run the load generators (wrk for peak throughput, openloop.py for latency at a rate)."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from servers import Server, postgres_cpu_by_pid, postgres_cpu_delta

BENCH = Path(__file__).resolve().parent
WRK_DIR = BENCH / "wrk"
CONNECTIONS = 64


@dataclass(frozen=True)
class WrkResult:
    rps: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    wrk_cpu_s: float
    server_cpu_s: float
    db_cpu_s: float
    seconds: float
    p95_ms: float = 0.0

    @property
    def server_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_s / max(self.requests, 1)

    @property
    def db_us_per_request(self) -> float:
        return 1e6 * self.db_cpu_s / max(self.requests, 1)

    @property
    def wrk_cpu_share(self) -> float:
        """The generator's CPU as a fraction of one core."""
        return self.wrk_cpu_s / max(self.seconds, 1e-9)


def ensure_wrk() -> str:
    if shutil.which("wrk") is None:
        print("installing wrk (apt-get)")
        subprocess.run("apt-get update -qq && apt-get install -y -qq wrk", shell=True, check=True)
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not available and could not be installed")
    return path


def wrk_version() -> str:
    output = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first_line = (output.stdout or output.stderr).splitlines()[0]
    return first_line.split(" Copyright")[0].removeprefix("wrk ")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pin(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def run_wrk(
    server: Server, script: str, data_file: Path, *, seconds: float, cpus: str | None
) -> WrkResult:
    """One closed-loop wrk run (1 thread, 64 connections) with CPU accounting around it."""
    command = _pin(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_DIR / script),
            server.base_url,
            "--",
            str(data_file),
        ],
        cpus,
    )
    server_before, db_before, wrk_before = (
        server.cpu_seconds(),
        postgres_cpu_by_pid(),
        _children_cpu(),
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    wrk_cpu = _children_cpu() - wrk_before
    server_cpu = server.cpu_seconds() - server_before
    db_cpu = postgres_cpu_delta(db_before, postgres_cpu_by_pid())
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    elapsed = data["duration_us"] / 1e6
    errors = sum(
        data[key]
        for key in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")
    )
    return WrkResult(
        rps=data["requests"] / elapsed,
        requests=data["requests"],
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        wrk_cpu_s=wrk_cpu,
        server_cpu_s=server_cpu,
        db_cpu_s=db_cpu,
        seconds=elapsed,
    )


@dataclass(frozen=True)
class OpenLoopResult:
    rate: float
    sent: int
    ok: int
    failed: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float
    generator_cpu_share: float
    duration_s: float = 0.0


def run_open_loop(
    server: Server,
    paths_file: Path,
    *,
    rate: float,
    seconds: float,
    cpus: str | None,
    orders: bool = False,
) -> OpenLoopResult:
    """`orders`: `paths_file` is W4's data file, and the requests are new orders (POST)."""
    command = _pin(
        [
            sys.executable,
            str(BENCH / "openloop.py"),
            "--port",
            str(server.port),
            "--orders-file" if orders else "--paths-file",
            str(paths_file),
            "--rate",
            f"{rate:.1f}",
            "--duration",
            str(seconds),
            "--connections",
            str(CONNECTIONS),
        ],
        cpus,
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openloop failed ({done.returncode}):\n{done.stderr}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return OpenLoopResult(
        rate=data["rate"],
        sent=data["sent"],
        ok=data["ok"],
        failed=data["bad_status"] + data["errors"] + data["unfinished"],
        p50_ms=data["p50_ms"],
        p95_ms=data["p95_ms"],
        p99_ms=data["p99_ms"],
        max_ms=data["max_ms"],
        send_lag_p99_ms=data["send_lag_p99_ms"],
        generator_cpu_share=data["generator_cpu_s"] / max(data["duration_s"], 1e-9),
        duration_s=data["duration_s"],
    )
