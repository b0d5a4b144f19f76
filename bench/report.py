"""Machine facts and the results table: printed to the console and written as Markdown."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from loadgen import OpenLoopResult, WrkResult

RATIO_TARGET = 0.7
PACKAGES = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "asyncpg", "orjson")


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    script: str
    app_data: str
    ref_data: str
    p95_target_ms: float
    open_loop: bool


WORKLOADS = (
    Workload(
        "W1", "product by id", "w1_product.lua", "product_ids.txt", "product_ids.txt", 20, True
    ),
    Workload(
        "W2", "category page 1", "w2_category.lua", "category_ids.txt", "category_ids.txt", 20, True
    ),
    Workload(
        "W2p50", "category page 50", "w2_page50.lua", "page50_app.txt", "page50_ref.txt", 20, False
    ),
    Workload("W3", "search, 1-2 words", "w3_search.lua", "words.txt", "words.txt", 30, True),
)


@dataclass
class Cell:
    """Everything measured for one workload at one worker count."""

    app: list[WrkResult] = field(default_factory=list)
    ref: list[WrkResult] = field(default_factory=list)
    app_latency: OpenLoopResult | None = None
    ref_latency: OpenLoopResult | None = None

    @staticmethod
    def median_rps(runs: list[WrkResult]) -> float:
        return statistics.median(run.rps for run in runs) if runs else 0.0

    @property
    def ratio(self) -> float:
        ref = self.median_rps(self.ref)
        return self.median_rps(self.app) / ref if ref else 0.0


def machine() -> dict[str, str]:
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as file:
        mem_kib = next(int(line.split()[1]) for line in file if line.startswith("MemTotal"))
    return {
        "cores": f"{os.cpu_count()} (usable here: {len(os.sched_getaffinity(0))})",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "cpu": cpu_model,
        "kernel": platform.release(),
    }


def versions(server_version: str, wrk: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "postgresql": server_version, "wrk": wrk}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _spread(runs: list[WrkResult]) -> str:
    if not runs:
        return "-"
    values = sorted(run.rps for run in runs)
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return f"{values[0]:,.0f} / {statistics.median(values):,.0f} / {values[-1]:,.0f}"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _latency(result: OpenLoopResult | None) -> str:
    if result is None:
        return "-"
    failed = f", {result.failed} failed" if result.failed else ""
    return f"{result.p50_ms:.1f} / {result.p95_ms:.1f} / {result.p99_ms:.1f}{failed}"


def _mark(ok: bool) -> str:
    return "pass" if ok else "**miss**"


def throughput_rows(results: dict[int, dict[str, Cell]]) -> list[list[str]]:
    rows = []
    for workers, cells in results.items():
        for workload in WORKLOADS:
            cell = cells.get(workload.key)
            if cell is None or not cell.app:
                continue
            runs = cell.app + cell.ref
            rows.append(
                [
                    f"{workload.key} {workload.title}",
                    str(workers),
                    _spread(cell.app),
                    _spread(cell.ref),
                    f"{cell.ratio:.2f} {_mark(cell.ratio >= RATIO_TARGET)}",
                    f"{_median([r.server_us_per_request for r in cell.app]):,.0f}",
                    f"{_median([r.server_us_per_request for r in cell.ref]):,.0f}",
                    f"{_median([r.db_us_per_request for r in cell.app]):,.0f}"
                    f" / {_median([r.db_us_per_request for r in cell.ref]):,.0f}",
                    f"{_median([r.wrk_cpu_share for r in runs]):.0%}",
                    str(sum(r.errors for r in runs)),
                ]
            )
    return rows


THROUGHPUT_HEADER = [
    "workload",
    "workers",
    "app req/s (min / median / max)",
    "reference req/s",
    "app ÷ ref (≥ 0.70)",
    "app CPU µs/req",
    "ref CPU µs/req",
    "DB CPU µs/req app / ref",
    "wrk CPU",
    "errors",
]

LATENCY_HEADER = [
    "workload",
    "workers",
    "rate (70% of app peak)",
    "app p50 / p95 / p99 ms",
    "reference p50 / p95 / p99 ms",
    "p95 app ÷ ref",
    "p95 target",
    "generator CPU, send lag p99",
]


def latency_rows(results: dict[int, dict[str, Cell]]) -> list[list[str]]:
    rows = []
    for workers, cells in results.items():
        for workload in WORKLOADS:
            cell = cells.get(workload.key)
            if cell is None or cell.app_latency is None:
                continue
            app, ref = cell.app_latency, cell.ref_latency
            ok = app.p95_ms <= workload.p95_target_ms and app.failed == 0
            p95_ratio = f"{app.p95_ms / ref.p95_ms:.2f}" if ref and ref.p95_ms else "-"
            rows.append(
                [
                    f"{workload.key} {workload.title}",
                    str(workers),
                    f"{app.rate:,.0f} req/s",
                    _latency(app),
                    _latency(ref),
                    p95_ratio,
                    f"≤ {workload.p95_target_ms:.0f} ms {_mark(ok)}",
                    f"{app.generator_cpu_share:.0%}, {app.send_lag_p99_ms:.1f} ms",
                ]
            )
    return rows


def page50_notes(page_costs: tuple[float, float] | None) -> list[str]:
    if page_costs is None:
        return []
    page1, page50 = page_costs
    return [
        f"- Database round trip of the W2 SQL on the page-50 categories (one connection, idle "
        f"servers): page 1 {page1:,.0f} µs, page 50 {page50:,.0f} µs "
        f"(page 50 ÷ page 1 = {page50 / page1:.2f}; keyset pagination should keep it ≈ 1)."
    ]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def console(header: list[str], rows: list[list[str]]) -> str:
    cells = [header, *rows]
    widths = [max(len(row[i].replace("**", "")) for row in cells) for i in range(len(header))]
    out = []
    for row in cells:
        out.append(
            "  ".join(c.replace("**", "").ljust(w) for c, w in zip(row, widths, strict=True))
        )
    return "\n".join(out)


@dataclass
class RunInfo:
    started: datetime
    finished: datetime
    mode: str
    seconds: float
    repeats: int
    warmup: float
    open_loop_seconds: float
    pinning: str
    load_before: str
    load_after: str
    machine: dict[str, str]
    versions: dict[str, str]
    data: dict[str, int]
    page_costs: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)


def markdown(
    info: RunInfo, results: dict[int, dict[str, Cell]], extra: list[str] | None = None
) -> str:
    facts = " · ".join(f"{k} {v}" for k, v in info.machine.items())
    vers = " · ".join(f"{k} {v}" for k, v in info.versions.items())
    duration = (info.finished - info.started).total_seconds()
    parts = [
        "# Benchmarks: latest run",
        "",
        "Written by `make bench` (`bench/run.py`); the workloads, references and targets are in",
        "`/work/shared/design/BENCHMARKS.md`. Figures are ratios against the reference server",
        "measured in the same run, because the machine is shared and noisy.",
        "",
        f"- **Date**: {info.started.astimezone(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{duration / 60:.1f} min, mode `{info.mode}`",
        f"- **Machine**: {facts}",
        f"- **Load average** (1/5/15 min) before: {info.load_before}, after: {info.load_after}",
        f"- **Versions**: {vers}",
        f"- **Data**: {info.data.get('products', 0):,} live products; W2 page 1 draws from "
        f"all {info.data.get('categories', 0)} categories with a full page (mostly leaves); "
        f"page 50 needs ≥ 50 pages, which only the {info.data.get('deep', 0)} top-level "
        f"categories have: it uses cursors of {info.data.get('cursors', 0)} of them (each a "
        "subtree of about 10 categories, so page 50 is a heavier query than an average page 1)",
        f"- **wrk**: 1 thread, c=64, {info.seconds:.0f} s per run after a {info.warmup:.0f} s "
        f"warm-up, {info.repeats} run(s) per server, app and reference alternated; {info.pinning}",
        f"- **Open loop**: `bench/openloop.py`, {info.open_loop_seconds:.0f} s at 70% of the "
        "app's median wrk peak, latency from the intended send time (HdrHistogram)",
        "",
        "Run: `make bench` (full) or `.venv/bin/python bench/run.py --quick` (one 5 s run of",
        "each, no reference open loop). Options: `--duration S`, `--repeats N` (default: as many,",
        "up to 3, as fit `--budget`), `--workers 1`, `--skip-seed`, `--no-pin`, `--note TEXT`.",
        "Database: `BENCH_DATABASE_URL` (default `postgresql://postgres@127.0.0.1:5432/"
        "mercato_bench`).",
        "",
        "## Peak throughput (wrk, closed loop)",
        "",
        table(THROUGHPUT_HEADER, throughput_rows(results)),
        "",
        "CPU per request is the server's process group (all workers) and all PostgreSQL",
        "processes, from /proc, over the run; `wrk CPU` is the generator's share of one core.",
        "",
        "## Latency at a stated rate (open loop)",
        "",
        table(LATENCY_HEADER, latency_rows(results)),
        "",
        "The reference gets the same rate as the app (not in quick mode). `send lag` is how",
        "late the generator itself sent (≤ ~1 ms timer granularity normally); it is included",
        "in the latencies, so a large value means the generator's core was starved.",
        "",
        "## Page 50 against page 1",
        "",
        *page50_notes(info.page_costs),
    ]
    if extra:
        parts += ["", *extra]
    if info.notes:
        parts += ["", "## Notes", "", *(f"- {note}" for note in info.notes)]
    return "\n".join(parts) + "\n"


KEEP_MARKER = "<!-- Everything below this line is hand-written and kept by bench/run.py. -->"


def write_markdown(
    path: Path, info: RunInfo, results: dict[int, dict[str, Cell]], extra: list[str] | None = None
) -> None:
    """Write the report, keeping the hand-written analysis after KEEP_MARKER if present."""
    kept = ""
    if path.exists():
        _, marker, tail = path.read_text().partition(KEEP_MARKER)
        kept = marker + tail if marker else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(info, results, extra) + ("\n" + kept if kept else ""))


def splice_section(path: Path, section: list[str]) -> None:
    """Replace the generated section titled like `section[0]` (or add it before the notes
    and the hand-written part), leaving the rest of the report as it is."""
    heading = section[0]
    generated, marker, kept = path.read_text().partition(KEEP_MARKER)
    lines = generated.rstrip("\n").split("\n")
    if heading in lines:
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        while end > start and lines[end - 1] == "":
            end -= 1
        lines[start:end] = section
    else:
        at = lines.index("## Notes") if "## Notes" in lines else len(lines)
        while at > 0 and lines[at - 1] == "":
            at -= 1
        lines[at:at] = ["", *section]
    path.write_text("\n".join(lines) + "\n" + ("\n" + marker + kept if marker else ""))
