"""What a `make bench` run will do: its command line, and the plan made from it."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from report import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
SETUP_ESTIMATE_S = 30.0  # migrate, idempotent seed, id export
START_ESTIMATE_S = 6.0  # both servers, then the page-50 cursor walk
S1_ESTIMATE_S = 60.0  # two subscriber counts at 10 s each, connects, drain, relay


@dataclass(frozen=True)
class Plan:
    mode: str
    seconds: float
    warmup: float
    repeats: int
    open_loop_seconds: float
    reference_open_loop: bool
    workers: tuple[int, ...]
    pin: bool

    def estimate(self, repeats: int | None = None) -> float:
        runs = repeats or self.repeats
        wrk = len(WORKLOADS) * 2 * (self.warmup + 0.3 + runs * (self.seconds + 0.3))
        loops = sum(w.open_loop for w in WORKLOADS) * (2 if self.reference_open_loop else 1)
        per_workers = START_ESTIMATE_S + wrk + loops * (self.open_loop_seconds + 1.0)
        return SETUP_ESTIMATE_S + len(self.workers) * per_workers + S1_ESTIMATE_S


def make_plan(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    plan = Plan(
        mode="quick" if quick else "full",
        seconds=args.duration or (5.0 if quick else 20.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        repeats=args.repeats or 1,
        open_loop_seconds=args.open_loop_seconds or (4.0 if quick else 8.0),
        reference_open_loop=not quick,
        workers=(args.workers,) if args.workers else (1, 2),
        pin=not args.no_pin and len(os.sched_getaffinity(0)) >= 2,
    )
    if not args.repeats and not quick:
        # As many repeats (up to 3) as fit the time budget.
        fitting = [r for r in (3, 2, 1) if plan.estimate(r) <= args.budget]
        plan = dataclasses.replace(plan, repeats=fitting[0] if fitting else 1)
    return plan


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="One 5 s run of each (~2.5 min).")
    parser.add_argument("--duration", type=float, help="Seconds per wrk run (20; quick 5).")
    parser.add_argument("--repeats", type=int, help="wrk runs per server (default: fit budget).")
    parser.add_argument("--budget", type=float, default=540, help="Seconds for auto repeats.")
    parser.add_argument("--warmup", type=float, help="Warm-up seconds per server (2; quick 1).")
    parser.add_argument("--open-loop-seconds", type=float, help="Open-loop run (8; quick 4).")
    parser.add_argument("--workers", type=int, choices=(1, 2), help="Only this worker count.")
    parser.add_argument("--skip-seed", action="store_true", help="Do not run `mercato seed`.")
    parser.add_argument("--no-pin", action="store_true", help="Do not pin with taskset.")
    parser.add_argument("--note", action="append", default=[], help="A note for the report.")
    parser.add_argument("--only-s1", action="store_true", help="Only S1; splice it in.")
    parser.add_argument("--only-auth", action="store_true", help="Only A1; splice it in.")
    parser.add_argument("--only-w4", action="store_true", help="Only W4; splice it in.")
    parser.add_argument("--only-e1", action="store_true", help="Only E1; splice it in.")
    parser.add_argument(
        "--e1-rows", type=int, nargs="+", default=[100_000, 1_000_000], help="E1 feed sizes."
    )
    parser.add_argument("--s1-rate", type=float, default=50.0, help="S1 events/s (50).")
    parser.add_argument("--s1-seconds", type=float, default=10.0, help="S1 send seconds (10).")
    parser.add_argument(
        "--s1-subscribers", type=int, nargs="+", default=[100, 1_000], help="S1 counts."
    )
    parser.add_argument(
        "--s1-workers", type=int, choices=(1, 2), default=2, help="S1 app workers (2)."
    )
    parser.add_argument("--s1-clients", type=int, default=2, help="S1 subscriber processes (2).")
    parser.add_argument(
        "--s1-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help='S1 subscribers ask for "batch": true (default; --no-s1-batch for one frame each).',
    )
    parser.add_argument("--s1-port", type=int, default=8103, help="S1 app port (8103).")
    parser.add_argument(
        "--s1-relay-worker",
        action="store_true",
        help="S1 with the relay in `mercato worker` (MERCATO_RELAY_IN_PROCESS=false).",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    return parser.parse_args()
