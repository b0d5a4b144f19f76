"""A1: what authentication costs on W1, and the login rate the argon2 parameters allow.

Same run, same app process (1 worker, production settings): W1 anonymous and W1 with an
access token alternate; then closed-loop logins with wrk against POST /api/v1/auth/login;
and, for reference, argon2id verifications timed in this process on one core.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import loadgen
from report import Workload
from servers import Server

from mercato.core.crypto import BlindIndex
from mercato.identity.passwords import Passwords

W1_ANONYMOUS = Workload(
    "W1", "product by id", "w1_product.lua", "product_ids.txt", "product_ids.txt", 20, False
)
W1_SIGNED_IN = Workload(
    "W1a", "product by id, signed in", "w1_product_auth.lua", "product_ids.txt", "", 20, False
)
LOGIN = Workload("L", "login", "login.lua", "login_emails.txt", "", 0, False)
PASSWORD = "bench-" + secrets.token_urlsafe(12)
HEADER = ["workload", "req/s (median)", "p50 ms", "p99 ms", "server µs/req", "db µs/req", "errors"]


@dataclass
class AuthRun:
    anonymous: list[loadgen.WrkResult] = field(default_factory=list)
    signed_in: list[loadgen.WrkResult] = field(default_factory=list)
    logins: list[loadgen.WrkResult] = field(default_factory=list)
    argon2_ms: float = 0.0
    parameters: str = ""


def _create_account(mercato: str, env: dict[str, str], cwd: Path) -> str:
    email = f"bench-{int(time.time())}-{secrets.token_hex(3)}@bench.example"
    subprocess.run(
        [mercato, "users", "create-admin", "--email", email, "--password-stdin"],
        input=PASSWORD + "\n",
        text=True,
        env=env,
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return email


LOGIN_ACCOUNTS = 200  # logins spread over many accounts: each has a per-account attempt cap


async def _login_accounts(url: str, env: dict[str, str], template_email: str) -> list[str]:
    """Accounts that share the benchmark account's password hash (and sealed names, which
    a login never opens), each under its own address."""
    index = BlindIndex(env["MERCATO_BLIND_INDEX_KEY"].encode())
    emails = [f"login-{n}-{secrets.token_hex(4)}@bench.example" for n in range(LOGIN_ACCOUNTS)]
    conn = await asyncpg.connect(url)
    try:
        for email in emails:
            await conn.execute(
                "INSERT INTO identity.users (email_index, email, first_name, last_name,"
                " data_key_version, password_hash)"
                " SELECT $1, email, first_name, last_name, data_key_version, password_hash"
                " FROM identity.users WHERE email_index = $2",
                index.email(email),
                index.email(template_email),
            )
    finally:
        await conn.close()
    return emails


def _argon2_ms(env: dict[str, str], samples: int = 20) -> tuple[float, str]:
    memory = int(env.get("MERCATO_ARGON2_MEMORY_KIB", "19456"))
    passes = int(env.get("MERCATO_ARGON2_TIME_COST", "2"))
    lanes = int(env.get("MERCATO_ARGON2_PARALLELISM", "1"))
    passwords = Passwords(memory_kib=memory, time_cost=passes, parallelism=lanes)
    stored = passwords._hasher.hash(PASSWORD)
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        passwords._verify(stored, PASSWORD)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), f"m={memory} KiB, t={passes}, p={lanes}"


def run_auth(
    *,
    app: Server,
    url: str,
    results: Path,
    mercato: str,
    env: dict[str, str],
    cwd: Path,
    wrk: Callable[[Server, Workload, float], loadgen.WrkResult],
    seconds: float,
    repeats: int,
) -> AuthRun:
    run = AuthRun()
    email = _create_account(mercato, env, cwd)
    login = httpx.post(
        f"{app.base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    login.raise_for_status()
    os.environ["BENCH_TOKEN"] = login.json()["data"]["access_token"]
    os.environ["BENCH_PASSWORD"] = PASSWORD
    emails = asyncio.run(_login_accounts(url, env, email))
    (results / "login_emails.txt").write_text("\n".join(emails) + "\n")
    for workload in (W1_ANONYMOUS, W1_SIGNED_IN):
        wrk(app, workload, 1.0)  # warm-up
    for repeat in range(repeats):
        order = [W1_ANONYMOUS, W1_SIGNED_IN][:: 1 if repeat % 2 == 0 else -1]
        for workload in order:
            result = wrk(app, workload, seconds)
            (run.anonymous if workload is W1_ANONYMOUS else run.signed_in).append(result)
            _print(workload, result)
    for _ in range(max(1, repeats // 2)):
        result = wrk(app, LOGIN, seconds)  # data file: login_emails.txt
        run.logins.append(result)
        _print(LOGIN, result)
    run.argon2_ms, run.parameters = _argon2_ms(env)
    return run


def _print(workload: Workload, result: loadgen.WrkResult) -> None:
    print(
        f"  {workload.key:<4} {result.rps:9,.0f} req/s  p99 {result.p99_ms:7.1f} ms  "
        f"server {result.server_us_per_request:6,.0f} µs/req  errors {result.errors}"
    )


def _row(name: str, runs: list[loadgen.WrkResult]) -> list[str]:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    return [
        name,
        f"{median([r.rps for r in runs]):,.0f}",
        f"{median([r.p50_ms for r in runs]):.2f}",
        f"{median([r.p99_ms for r in runs]):.2f}",
        f"{median([r.server_us_per_request for r in runs]):,.0f}",
        f"{median([r.db_us_per_request for r in runs]):,.0f}",
        str(sum(r.errors for r in runs)),
    ]


def auth_rows(run: AuthRun) -> list[list[str]]:
    return [
        _row("W1 anonymous", run.anonymous),
        _row("W1 signed in (access token)", run.signed_in),
        _row("POST /auth/login", run.logins),
    ]


def auth_section(run: AuthRun, table: Callable[[list[str], list[list[str]]], Any]) -> list[str]:
    def median_us(runs: list[loadgen.WrkResult]) -> float:
        return statistics.median(r.server_us_per_request for r in runs) if runs else 0.0

    extra = median_us(run.signed_in) - median_us(run.anonymous)
    anonymous = statistics.median(r.rps for r in run.anonymous) if run.anonymous else 0.0
    signed_in = statistics.median(r.rps for r in run.signed_in) if run.signed_in else 0.0
    logins = statistics.median(r.rps for r in run.logins) if run.logins else 0.0
    return [
        "## A1 authentication cost",
        "",
        table(HEADER, auth_rows(run)),
        "",
        f"- **Signed-in W1** costs {extra:,.0f} µs more server CPU per request than anonymous "
        f"({signed_in / anonymous:.2f} times the anonymous throughput): EdDSA verification of the "
        "token, one indexed read of the account's session version and roles, and the "
        "per-account rate-limit bucket.",
        f"- **Logins**: {logins:,.0f}/s through the API with 64 connections on one worker; "
        f"argon2id ({run.parameters}) takes {run.argon2_ms:.1f} ms per verification here, "
        f"so one core allows at most ~{1000 / max(run.argon2_ms, 0.001):,.0f} password checks/s.",
        "- `bench/auth.py`: the app as in W1 (1 worker, production settings, rate limits "
        "raised so that one client address is not refused), an administrator created with "
        "`mercato users create-admin`, its access token sent by `bench/wrk/w1_product_auth.lua`; "
        "logins by `bench/wrk/login.lua` with the same account (successful logins: each "
        "writes a refresh token and an audit row).",
    ]
