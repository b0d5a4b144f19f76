"""The secrets the benchmarked app runs with, kept between runs."""

from __future__ import annotations

import base64
import json
import secrets
import string
from pathlib import Path


def bench_secrets(results: Path) -> dict[str, str]:
    """The benchmark database keeps sealed keys (JWT signing keys) between runs: its
    secrets must outlive one run, so they are kept beside the results (not committed)."""
    path = results / "secrets.json"
    kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        "MERCATO_SECRET_KEY": _random_secret,
        "MERCATO_DATA_KEYS": lambda: "1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "MERCATO_BLIND_INDEX_KEY": _random_secret,
        "MERCATO_PAYMENT_WEBHOOK_SECRET": lambda: "whsec_" + _random_secret(),
        "MERCATO_PAYMENT_API_KEY": lambda: "sk_test_bench_" + _random_secret(),
    }
    missing = {name: make() for name, make in wanted.items() if name not in kept}
    if missing:
        kept.update(missing)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(kept))
        path.chmod(0o600)
    return kept


def _random_secret(length: int = 40) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
