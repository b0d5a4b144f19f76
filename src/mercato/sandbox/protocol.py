"""Stripe's wire conventions: form bodies in bracket notation, error objects, ids, signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def new_id(prefix: str, length: int = 24) -> str:
    """An id in Stripe's style: `pi_3Nx...`, random letters and digits after the prefix."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


def dumps(obj: Any) -> bytes:
    """JSON as Stripe writes it (indented; clients must not care)."""
    return json.dumps(obj, indent=2).encode()


class StripeError(Exception):
    """An error answer, `{"error": {"type": ..., "message": ..., "code": ...}}`.

    `stored` is False for errors Stripe does not keep under an idempotency key: requests
    that failed parameter validation never started executing, so a retry with the same key
    and corrected parameters runs afresh.
    """

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        stored: bool = True,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.stored = stored
        self.error: dict[str, Any] = {"type": type_, "message": message}
        if code is not None:
            self.error["code"] = code
        if param is not None:
            self.error["param"] = param
        self.error.update(extra)

    def body(self) -> dict[str, Any]:
        return {"error": self.error}


def invalid_request(
    message: str, *, code: str | None = None, param: str | None = None, **extra: Any
) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code=code, param=param, **extra)


def param_error(message: str, *, code: str, param: str) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code=code, param=param, stored=False)


def not_found(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def parse_form(raw: str) -> dict[str, Any]:
    """`a=1&metadata[k]=v&expand[]=x` -> `{"a": "1", "metadata": {"k": "v"}, "expand": ["x"]}`."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        match = _KEY.match(key)
        if match is None:
            raise param_error(f"Invalid parameter name: {key}", code="parameter_unknown", param=key)
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        node = params
        for depth, segment in enumerate(path):
            last = depth == len(path) - 1
            if segment == "":
                if not last or not isinstance(node, list):
                    raise param_error(f"Invalid array: {key}", code="parameter_invalid", param=key)
                node.append(value)
                break
            if not isinstance(node, dict):
                raise param_error(f"Invalid hash: {key}", code="parameter_invalid", param=key)
            if last:
                if segment in node:
                    raise param_error(
                        f"Received the parameter {key} more than once.",
                        code="parameter_invalid",
                        param=key,
                    )
                node[segment] = value
            else:
                default: Any = [] if path[depth + 1] == "" else {}
                node = node.setdefault(segment, default)
    return params


def reject_unknown(params: dict[str, Any], allowed: Iterable[str]) -> None:
    for name in params.keys() - set(allowed):
        raise param_error(
            f"Received unknown parameter: {name}", code="parameter_unknown", param=name
        )


def string_param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise param_error(f"Invalid string: {name}", code="parameter_invalid_string", param=name)
    return value


def integer_param(params: dict[str, Any], name: str) -> int | None:
    value = string_param(params, name)
    if value is None:
        return None
    if not re.fullmatch(r"-?\d{1,18}", value):
        raise param_error(f"Invalid integer: {value}", code="parameter_invalid_integer", param=name)
    return int(value)


def boolean_param(params: dict[str, Any], name: str) -> bool:
    value = string_param(params, name)
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise param_error(f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=name)


def metadata_param(params: dict[str, Any]) -> dict[str, str]:
    value = params.get("metadata", {})
    if value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise param_error(
            "Invalid metadata: use metadata[key]=value.", code="parameter_invalid", param="metadata"
        )
    return {k: v for k, v in value.items() if v != ""}


def signature_header(secret: str, payload: bytes, timestamp: int) -> str:
    """Stripe-Signature: `t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>." + payload)>`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True, slots=True)
class Call:
    """One /v1 request as an operation sees it."""

    path: dict[str, str]
    params: dict[str, Any]
    idempotency_key: str | None = None
    request_id: str = field(default_factory=lambda: new_id("req", 14))


@dataclass(slots=True)
class Answer:
    """What an operation answers; `drop` loses the response on the way back (network failure)."""

    status: int
    body: dict[str, Any]
    stored: bool = True
    drop: bool = False
