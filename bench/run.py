"""`make bench`: W1 to W3 against the app and the reference server, then A1, W4, S1 and E1.

Prepares the `mercato_bench` database (migrate, seed 100k products), starts the app in
production mode and the reference server side by side (1 and 2 workers), measures peak
throughput with wrk and latency at 70% of the app's peak with an open-loop generator, then
prints the table and writes docs/benchmarks.md. Then S1 (bench/stream.py): WebSocket
subscribers, events committed at a fixed rate, and the relay's events/s. Every server it
starts is stopped on exit.

    .venv/bin/python bench/run.py                          # full: 20 s runs, ~8.5 min
    .venv/bin/python bench/run.py --duration 7 --repeats 3 # min/median/max, ~9 min
    .venv/bin/python bench/run.py --quick                  # 5 s runs, ~2.5 min
    .venv/bin/python bench/run.py --only-s1                # S1 alone, ~1 min
    .venv/bin/python bench/run.py --only-auth --quick      # A1 alone, ~1 min
    .venv/bin/python bench/run.py --only-w4 --quick        # W4 alone, ~2.5 min
    .venv/bin/python bench/run.py --only-e1                # E1 alone (100k, 1M rows), ~5 min
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import auth
import dataset
import e1
import loadgen
import report
import servers
import stream
import w4
import w4_report
from bench_keys import bench_secrets
from plan import Plan, make_plan, parse_args
from report import WORKLOADS, Cell, Workload
from servers import Server, launch_server, stop_server, wait_ready

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
APP_PORT, REF_PORT = 8101, 8102
PRODUCTS, CATEGORIES = 100_000, 200
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Bench:
    def __init__(self, plan: Plan, database_url: str) -> None:
        self.plan = plan
        self.database_url = database_url
        self.servers: list[Server] = []
        self.notes: list[str] = []
        self.cursors = 0
        self.page_costs: tuple[float, float] | None = None
        bin_dir = Path(sys.executable).parent
        self.mercato = str(bin_dir / "mercato")
        base = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
        # One secret for the whole run: the page-50 cursors the app signs must stay valid
        # when it restarts with another worker count.
        self.app_env = {
            **base,
            "DATABASE_URL": database_url,
            "MERCATO_ENVIRONMENT": "production",
            **bench_secrets(RESULTS),
            "MERCATO_ACCESS_LOG": "true",
            # Every request still passes the rate limiter; the limits are raised so that
            # the generator, one client address, is not refused.
            "MERCATO_RATE_LIMIT_ANONYMOUS": "1000000000/minute",
            "MERCATO_RATE_LIMIT_AUTHENTICATED": "1000000000/minute",
            "MERCATO_RATE_LIMIT_SENSITIVE": "1000000000/minute",
        }
        self.ref_env = {**base, "DATABASE_URL": database_url}
        self.server_cpus = "0" if plan.pin else None
        self.generator_cpus = "1" if plan.pin else None

    def start(self, workers: int) -> tuple[Server, Server]:
        serve = [self.mercato, "serve", "--port", str(APP_PORT), "--workers", str(workers)]
        uvicorn = [sys.executable, "-m", "uvicorn", "reference_server:app", "--app-dir", str(BENCH)]
        uvicorn += ["--port", str(REF_PORT), "--workers", str(workers), "--loop", "uvloop"]
        uvicorn += ["--http", "httptools", "--log-level", "warning", "--no-access-log"]
        uvicorn += ["--no-server-header"]
        # One worker: pin the servers to core 0 and the generators to core 1. Two workers
        # need both cores, so only the generator is pinned.
        cpus = self.server_cpus if workers == 1 else None
        for name, command, port, env in (
            ("app", serve, APP_PORT, self.app_env),
            ("reference", uvicorn, REF_PORT, self.ref_env),
        ):
            log = RESULTS / f"{name}-{workers}w.stderr.log"
            server = launch_server(name, command, port=port, env=env, cwd=ROOT, log=log, cpus=cpus)
            self.servers.append(server)
        for server in self.servers[-2:]:
            wait_ready(server)
        return self.servers[-2], self.servers[-1]

    def stream(self, args: argparse.Namespace) -> stream.S1Run:
        print("\n== S1 stream latency")
        return stream.run_s1(
            database_url=self.database_url,
            env=self.app_env,
            cwd=ROOT,
            log=RESULTS / "stream-app.stderr.log",
            servers=self.servers,
            subscribers=args.s1_subscribers,
            rate=args.s1_rate,
            seconds=args.s1_seconds,
            pin=self.plan.pin,
            setup=stream.S1Setup(
                workers=args.s1_workers,
                client_processes=args.s1_clients,
                batch=args.s1_batch,
                port=args.s1_port,
                relay_worker=args.s1_relay_worker,
            ),
        )

    def auth(self) -> auth.AuthRun:
        print("\n== A1 authentication cost")
        app, _ = self.start(1)
        try:
            return auth.run_auth(
                app=app,
                url=self.database_url,
                results=RESULTS,
                mercato=self.mercato,
                env=self.app_env,
                cwd=ROOT,
                wrk=self.wrk,
                seconds=min(self.plan.seconds, 10.0),
                repeats=max(2, min(self.plan.repeats, 4)),
            )
        finally:
            self.stop_all()

    def w4(self) -> w4.W4Run:
        print("\n== W4 place order")
        app, _ = self.start(1)
        try:
            return w4.run_w4(
                app=app,
                url=self.database_url,
                env=self.app_env,
                results=RESULTS,
                wrk=self.wrk,
                seconds=min(self.plan.seconds, 10.0),
                repeats=max(2, min(self.plan.repeats, 3)),
                open_loop_seconds=max(self.plan.open_loop_seconds, 8.0),
                cpus=self.generator_cpus,
            )
        finally:
            self.stop_all()

    def e1(self, admin_url: str, sizes: tuple[int, ...] = e1.SIZES) -> list[e1.E1Result]:
        print("\n== E1 import")
        base_url, _, _ = self.database_url.rpartition("/")
        return e1.run_e1(
            admin_url=admin_url,
            database_url=f"{base_url}/mercato_e1",
            name="mercato_e1",
            mercato=self.mercato,
            env=self.app_env,
            results=RESULTS,
            sizes=sizes,
        )

    def stop_all(self) -> None:
        while self.servers:
            stop_server(self.servers.pop())

    def wrk(self, server: Server, workload: Workload, seconds: float) -> loadgen.WrkResult:
        data = workload.app_data if server.name == "app" else workload.ref_data
        return loadgen.run_wrk(
            server, workload.script, RESULTS / data, seconds=seconds, cpus=self.generator_cpus
        )

    def measure(self, workers: int) -> dict[str, Cell]:
        print(f"\n== {workers} worker(s)")
        app, ref = self.start(workers)
        if not self.cursors:
            self.cursors = dataset.collect_page_cursors(app.base_url, RESULTS)
            self.page_costs = dataset.page_costs(self.database_url, RESULTS)
            problems = dataset.check_same_rows(app.base_url, ref.base_url, RESULTS)
            for problem in problems:
                print(f"  MISMATCH {problem}")
            self.notes += [f"App and reference disagree: {p}" for p in problems]
        cells: dict[str, Cell] = {}
        for workload in WORKLOADS:
            cell = cells[workload.key] = Cell()
            for server in (app, ref):
                self.wrk(server, workload, self.plan.warmup)
            for repeat in range(self.plan.repeats):
                order = (app, ref) if repeat % 2 == 0 else (ref, app)
                for server in order:
                    result = self.wrk(server, workload, self.plan.seconds)
                    (cell.app if server is app else cell.ref).append(result)
                    print(
                        f"  {workload.key:<6} {server.name:<9} {result.rps:9,.0f} req/s  "
                        f"p99 {result.p99_ms:7.1f} ms  server {result.server_us_per_request:6,.0f}"
                        f" µs/req  db {result.db_us_per_request:5,.0f} µs/req  "
                        f"wrk {result.wrk_cpu_share:4.0%}  errors {result.errors}"
                    )
            if workload.open_loop:
                self.open_loop(workload, cell, app, ref)
        self.stop_all()
        return cells

    def open_loop(self, workload: Workload, cell: Cell, app: Server, ref: Server) -> None:
        rate = 0.7 * Cell.median_rps(cell.app)
        paths = RESULTS / f"paths_{workload.key.lower()}.txt"
        targets = [app, ref] if self.plan.reference_open_loop else [app]
        for server in targets:
            result = loadgen.run_open_loop(
                server,
                paths,
                rate=rate,
                seconds=self.plan.open_loop_seconds,
                cpus=self.generator_cpus,
            )
            if server is app:
                cell.app_latency = result
            else:
                cell.ref_latency = result
            print(
                f"  {workload.key:<6} {server.name:<9} open loop at {rate:,.0f} req/s: p50 "
                f"{result.p50_ms:.1f} p95 {result.p95_ms:.1f} p99 {result.p99_ms:.1f} ms, "
                f"{result.failed} failed"
            )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def only_one(
    bench: Bench,
    output: Path,
    *,
    flag: str,
    measure: Callable[[], Any],
    header: list[str],
    rows: Callable[[Any], list[list[str]]],
    section: Callable[[Any, Callable[[list[str], list[list[str]]], str]], list[str]],
) -> None:
    """One workload alone (`--only-...`): measure, print, and splice its section into the
    report, leaving the other sections from their own run."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupt)
    try:
        run = measure()
    finally:
        handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        bench.stop_all()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    print()
    print(report.console(header, rows(run)))
    lines = section(run, report.table)
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {report.load_average()}"
    lines[1:1] = ["", f"Measured {when} (`{flag}`; the tables above are from their own run)."]
    if output.exists():
        report.splice_section(output, lines)
    print(f"\nwrote the {lines[0].removeprefix('## ')} section of {output}")


def main() -> None:
    args = parse_args()
    plan = make_plan(args)
    started = datetime.now(UTC)
    load_before = report.load_average()
    print(
        "mode S1 only"
        if args.only_s1
        else f"mode {plan.mode}: {plan.repeats} x {plan.seconds:.0f} s per server and workload, "
        f"workers {plan.workers}, estimated {plan.estimate() / 60:.1f} min"
    )
    RESULTS.mkdir(exist_ok=True)
    dataset.check_same_sql()
    loadgen.ensure_wrk()
    admin_url, url, name = dataset.database_urls(os.environ.get("BENCH_DATABASE_URL"))
    servers.POSTGRES_DATABASE = name
    dataset.prepare_database(
        admin_url,
        url,
        name,
        products=PRODUCTS,
        categories=CATEGORIES,
        seed=not (args.skip_seed or args.only_s1 or args.only_e1),
    )
    if args.only_s1:
        bench = Bench(plan, url)
        only_one(
            bench,
            args.output,
            flag="--only-s1",
            measure=lambda: bench.stream(args),
            header=stream.S1_HEADER,
            rows=stream.s1_rows,
            section=stream.s1_section,
        )
        return
    if args.only_w4:
        bench = Bench(plan, url)
        only_one(
            bench,
            args.output,
            flag="--only-w4",
            measure=bench.w4,
            header=w4_report.HEADER,
            rows=w4_report.w4_rows,
            section=w4_report.w4_section,
        )
        return
    if args.only_e1:
        bench = Bench(plan, url)
        only_one(
            bench,
            args.output,
            flag="--only-e1",
            measure=lambda: bench.e1(admin_url, tuple(args.e1_rows)),
            header=e1.HEADER,
            rows=e1.e1_rows,
            section=e1.e1_section,
        )
        return
    if args.only_auth:
        dataset.export_data(url, RESULTS)
        bench = Bench(plan, url)
        only_one(
            bench,
            args.output,
            flag="--only-auth",
            measure=bench.auth,
            header=auth.HEADER,
            rows=auth.auth_rows,
            section=auth.auth_section,
        )
        return
    data = dataset.export_data(url, RESULTS)
    dataset.write_open_loop_paths(RESULTS)
    bench = Bench(plan, url)
    # Ctrl-C, kill and a closed terminal all unwind through `finally` and stop the servers
    # (SIGINT too: a shell that starts us in the background sets it to "ignore").
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupt)
    results: dict[int, dict[str, Cell]] = {}
    try:
        for workers in plan.workers:
            results[workers] = bench.measure(workers)
        a1 = bench.auth()
        w4_run = bench.w4()
        s1 = bench.stream(args)
        e1_runs = bench.e1(admin_url, tuple(args.e1_rows))
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        handlers = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        bench.stop_all()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    data["cursors"] = bench.cursors
    pinning = (
        "servers on core 0 with 1 worker (unpinned with 2), generators on core 1"
        if plan.pin
        else "no CPU pinning"
    )
    info = report.RunInfo(
        started=started,
        finished=datetime.now(UTC),
        mode=plan.mode,
        seconds=plan.seconds,
        repeats=plan.repeats,
        warmup=plan.warmup,
        open_loop_seconds=plan.open_loop_seconds,
        pinning=pinning,
        load_before=load_before,
        load_after=report.load_average(),
        machine=report.machine(),
        versions=report.versions(
            (RESULTS / "server_version.txt").read_text(), loadgen.wrk_version()
        ),
        data=data,
        page_costs=bench.page_costs,
        notes=[*bench.notes, *args.note],
    )
    print()
    print(report.console(report.THROUGHPUT_HEADER, report.throughput_rows(results)))
    print()
    print(report.console(report.LATENCY_HEADER, report.latency_rows(results)))
    print("\n".join(["", *report.page50_notes(bench.page_costs)]))
    print()
    print(report.console(auth.HEADER, auth.auth_rows(a1)))
    print()
    print(report.console(w4_report.HEADER, w4_report.w4_rows(w4_run)))
    print()
    print(report.console(stream.S1_HEADER, stream.s1_rows(s1)))
    print()
    print(report.console(e1.HEADER, e1.e1_rows(e1_runs)))
    extra = [
        *auth.auth_section(a1, report.table),
        "",
        *w4_report.w4_section(w4_run, report.table),
        "",
        *stream.s1_section(s1, report.table),
        "",
        *e1.e1_section(e1_runs, report.table),
    ]
    report.write_markdown(args.output, info, results, extra)
    raw = {
        str(w): {k: dataclasses.asdict(c) for k, c in cells.items()} for w, cells in results.items()
    }
    (RESULTS / "last_run.json").write_text(json.dumps(raw, indent=1))
    elapsed = (info.finished - info.started).total_seconds()
    print(f"\nwrote {args.output} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    started = time.monotonic()
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(f"interrupted after {time.monotonic() - started:.0f}s; servers stopped")
