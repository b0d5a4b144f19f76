"""W4's report: the table and the section of docs/benchmarks.md, from a measured run."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import w4_floor
from w4 import HEADER, OPEN_LOOP_SHARE, W4Run

__all__ = ["HEADER", "w4_rows", "w4_section"]


def w4_rows(run: W4Run) -> list[list[str]]:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    app = run.app
    rows = [
        [
            "app, closed loop (wrk, 64 connections)",
            f"{run.peak():,.0f}",
            f"{median([r.p50_ms for r in app]):.1f}",
            f"{median([r.p95_ms for r in app]):.1f}",
            f"{median([r.p99_ms for r in app]):.1f}",
            f"{median([r.server_us_per_request for r in app]):,.0f}",
            f"{median([r.db_us_per_request for r in app]):,.0f}",
            str(sum(r.errors for r in app)),
        ]
    ]
    if run.open_loop is not None:
        latency = run.open_loop
        rows.append(
            [
                f"app, open loop at {latency.rate:,.0f}/s ({OPEN_LOOP_SHARE:.0%} of peak)",
                f"{latency.ok / max(latency.duration_s, 1e-9):,.0f}",
                f"{latency.p50_ms:.1f}",
                f"**{latency.p95_ms:.1f}**",
                f"{latency.p99_ms:.1f}",
                "",
                "",
                str(latency.failed),
            ]
        )
    best, _ = run.best_floor()
    for clients, tps in run.floor_by_clients().items():
        runs = [r for r in run.floor if r.clients == clients]
        label = f"pgbench floor, {clients} clients" + (" (best)" if clients == best else "")
        db_us = median([r.db_us_per_transaction for r in runs])
        latency = f"avg {median([r.latency_ms for r in runs]):.1f}"
        failed = str(sum(r.failed for r in runs))
        rows.append([label, f"{tps:,.0f}", latency, "", "", "", f"{db_us:,.0f}", failed])
    return rows


def w4_section(run: W4Run, table: Callable[[list[str], list[list[str]]], Any]) -> list[str]:
    peak = run.peak()
    clients, floor = run.best_floor()
    ratio = peak / floor if floor else 0.0
    p95 = run.open_loop.p95_ms if run.open_loop else 0.0
    rate = run.open_loop.rate if run.open_loop else 0.0
    generator = run.open_loop.generator_cpu_share if run.open_loop else 0.0
    lag = run.open_loop.send_lag_p99_ms if run.open_loop else 0.0
    return [
        "## W4 place order",
        "",
        table(HEADER, w4_rows(run)),
        "",
        f"- **{ratio:.2f} x the pgbench floor** (target >= 0.5; floor = best of "
        f"{', '.join(str(c) for c in w4_floor.CLIENTS)} clients: {floor:,.0f} tps at {clients}); "
        f"**open-loop p95 {p95:.1f} ms at {rate:,.0f} orders/s** (target <= 50 ms; the median "
        f"of {len(run.open_loops)} runs: "
        + " / ".join(f"{r.p95_ms:.1f}" for r in run.open_loops)
        + " ms); "
        f"**oversell: {run.oversold}** products whose stock differs from the units ordered "
        f"({run.ordered:,} units ordered in all).",
        "- Repeat by repeat (each wrk run against the best floor run right after it): "
        + " / ".join(f"{r:.2f}" for r in run.paired_ratios())
        + " x the floor.",
        "- `bench/w4.py`: 1,000 products with stock no run exhausts, 50 customers with access "
        "tokens; `bench/wrk/w4_order.lua` (peak) and `bench/openloop.py --orders-file` "
        "(latency from the intended send time) post 1-3 random products with a fresh "
        "Idempotency-Key; the floor runs the app's transaction from "
        "`results/w4_pgbench_{1,2,3}.sql` (bench/w4_floor.py; pgbench -M prepared, -j 2).",
        f"- Load average when W4 started: {run.load_before} (the machine is shared; compare "
        "the paired ratios, and re-run when the load moved).",
        "- App on core 0, generators and pgbench on core 1, PostgreSQL unpinned; the open-loop "
        f"generator used {generator:.0%} of its core and sent its requests at most {lag:.1f} ms "
        "late (p99), a lateness counted in the latencies.",
    ]
