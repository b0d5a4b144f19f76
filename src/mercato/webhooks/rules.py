"""The delivery rules, as plain functions: what a subscription wants, what an answer
means, how long to wait before the next attempt, and what a message looks like."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

WILDCARD = "*"
GONE = 410
EXCERPT_CHARS = 500


class Verdict(StrEnum):
    DELIVERED = "delivered"  # 2xx: the cursor moves past the event
    RETRY = "retry"  # anything else: the same event again, after a backoff
    DEAD = "dead"  # the last allowed attempt failed: dead letter, subscription paused
    GONE = "gone"  # 410: the receiver asks us to stop; the subscription is disabled


def wants(event_types: Collection[str], event_type: str) -> bool:
    return WILDCARD in event_types or event_type in event_types


def unknown_types(requested: Sequence[str], known: Collection[str]) -> list[str]:
    return [t for t in requested if t != WILDCARD and t not in known]


def acknowledged(status_code: int | None) -> bool:
    """Only a 2xx acknowledges. Redirects are failures: following one would let a
    receiver point us anywhere (past the SSRF guard, to begin with)."""
    return status_code is not None and 200 <= status_code < 300


def verdict(*, status_code: int | None, attempt: int, max_attempts: int) -> Verdict:
    """`status_code` is None when no answer came (timeout, refused, connection error)."""
    if acknowledged(status_code):
        return Verdict.DELIVERED
    if status_code == GONE:
        return Verdict.GONE
    return Verdict.DEAD if attempt >= max_attempts else Verdict.RETRY


def backoff_seconds(
    failures: int, *, base: float, cap: float, draw: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: a uniform pick in [0, min(cap, base·2^(n-1))].

    Full jitter spreads the retries of many subscriptions that failed together (a
    receiver's outage) instead of sending them back in synchronized waves."""
    ceiling = min(cap, base * 2.0 ** max(0, min(failures - 1, 62)))
    return ceiling * draw()


def message_body(event: dict[str, Any]) -> bytes:
    """What a receiver gets: the event's id, type, log position, time and payload."""
    occurred_at = event["occurred_at"]
    return orjson.dumps(
        {
            "id": str(event["event_id"]),
            "type": event["type"],
            "position": event["position"],
            "occurred_at": occurred_at.isoformat()
            if isinstance(occurred_at, datetime)
            else occurred_at,
            "data": event["payload"],
        }
    )


def excerpt(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
