"""Data contracts of the HTTP API: how a new OpenAPI document differs from the published one.

Breaking for a client written against the published document: a removed path, operation,
parameter, request or response media type, or response status; a new required parameter or
request body; a tighter access rule (`x-access`); and, inside the schemas (compared by
`core/contracts.py`, requests and responses each in their own direction), a removed field, a
changed type, a removed enum value, a new required request field or a narrower request
constraint. Everything else that differs (new paths, new optional fields, wider request
constraints, …) is listed as non-breaking.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mercato.core.contracts import Change, Direction, Schema, SchemaComparison

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
REQUEST = frozenset({Direction.REQUEST})
RESPONSE = frozenset({Direction.RESPONSE})


def openapi_changes(published: dict[str, Any], proposed: dict[str, Any]) -> list[Change]:
    """Every difference between two OpenAPI 3 documents, breaking or not, in a stable order."""
    return list(_DocumentComparison(published, proposed).changes())


class _DocumentComparison:
    def __init__(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.old, self.new = old, new
        self.schemas = SchemaComparison(old, new)

    def changes(self) -> Iterator[Change]:
        old_paths: dict[str, Any] = self.old.get("paths", {})
        new_paths: dict[str, Any] = self.new.get("paths", {})
        for path in sorted(old_paths.keys() | new_paths.keys()):
            if path not in new_paths:
                yield Change(path, "path removed", breaking=True)
            elif path not in old_paths:
                yield Change(path, "path added", breaking=False)
            else:
                yield from self._path(path, old_paths[path], new_paths[path])

    def _path(self, path: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
        for method in METHODS:
            at = f"{method.upper()} {path}"
            if method in old and method not in new:
                yield Change(at, "operation removed", breaking=True)
            elif method in new and method not in old:
                yield Change(at, "operation added", breaking=False)
            elif method in old:
                yield from self._operation(at, old[method], new[method])

    def _operation(self, at: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
        yield from _access_changes(at, old.get("x-access"), new.get("x-access"))
        yield from self._parameters(at, old.get("parameters", []), new.get("parameters", []))
        yield from self._request_body(at, old.get("requestBody"), new.get("requestBody"))
        old_responses: dict[str, Any] = old.get("responses", {})
        new_responses: dict[str, Any] = new.get("responses", {})
        for status in sorted(old_responses.keys() | new_responses.keys()):
            where = f"{at} {status} response"
            if status not in new_responses:
                yield Change(where, "response status removed", breaking=True)
            elif status not in old_responses:
                yield Change(where, "response status added", breaking=False)
            else:
                old_response = self._resolve(old_responses[status], self.old)
                new_response = self._resolve(new_responses[status], self.new)
                yield from self._content(where, old_response, new_response, RESPONSE)
                yield from _header_changes(where, old_response, new_response)

    def _parameters(
        self, at: str, old: list[dict[str, Any]], new: list[dict[str, Any]]
    ) -> Iterator[Change]:
        old_by_key = {_key(p): p for p in (self._resolve(p, self.old) for p in old)}
        new_by_key = {_key(p): p for p in (self._resolve(p, self.new) for p in new)}
        for key in sorted(old_by_key.keys() | new_by_key.keys()):
            where = f"{at} {key[0]} parameter {key[1]}"
            before, after = old_by_key.get(key), new_by_key.get(key)
            if after is None:
                yield Change(where, "parameter removed", breaking=True)
            elif before is None:
                required = bool(after.get("required"))
                kind = "required" if required else "optional"
                yield Change(where, f"new {kind} parameter", breaking=required)
            else:
                yield from _required_changes(where, before, after, "parameter")
                yield from self.schemas.compare(
                    before.get("schema", {}), after.get("schema", {}), REQUEST, f"{where} $"
                )

    def _request_body(self, at: str, old: Any, new: Any) -> Iterator[Change]:
        where = f"{at} request body"
        if old is None and new is None:
            return
        if new is None:
            yield Change(where, "request body removed", breaking=True)
            return
        new = self._resolve(new, self.new)
        if old is None:
            required = bool(new.get("required"))
            kind = "required" if required else "optional"
            yield Change(where, f"new {kind} request body", breaking=required)
            return
        old = self._resolve(old, self.old)
        yield from _required_changes(where, old, new, "request body")
        yield from self._content(where, old, new, REQUEST)

    def _content(
        self,
        at: str,
        old: dict[str, Any],
        new: dict[str, Any],
        directions: frozenset[Direction],
    ) -> Iterator[Change]:
        old_content: dict[str, Any] = old.get("content", {})
        new_content: dict[str, Any] = new.get("content", {})
        for media_type in sorted(old_content.keys() | new_content.keys()):
            where = f"{at} ({media_type})"
            if media_type not in new_content:
                yield Change(where, "media type removed", breaking=True)
            elif media_type not in old_content:
                yield Change(where, "media type added", breaking=False)
            else:
                old_schema: Schema = old_content[media_type].get("schema", {})
                new_schema: Schema = new_content[media_type].get("schema", {})
                yield from self.schemas.compare(old_schema, new_schema, directions, f"{where} $")

    @staticmethod
    def _resolve(item: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
        """Follows a `$ref` to `#/components/{parameters,requestBodies,responses}/…`."""
        ref = item.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return item
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part, {})
        return target if isinstance(target, dict) else {}


def _key(parameter: dict[str, Any]) -> tuple[str, str]:
    # Header names are case-insensitive; path, query and cookie names are not.
    location, name = str(parameter.get("in")), str(parameter.get("name"))
    return location, name.lower() if location == "header" else name


def _required_changes(
    at: str, old: dict[str, Any], new: dict[str, Any], what: str
) -> Iterator[Change]:
    before, after = bool(old.get("required")), bool(new.get("required"))
    if after and not before:
        yield Change(at, f"{what} is now required", breaking=True)
    elif before and not after:
        yield Change(at, f"{what} is no longer required", breaking=False)


def _header_changes(at: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    old_headers = {name.lower() for name in old.get("headers", {})}
    new_headers = {name.lower() for name in new.get("headers", {})}
    for name in sorted(old_headers - new_headers):
        yield Change(f"{at} header {name}", "response header removed", breaking=True)
    for name in sorted(new_headers - old_headers):
        yield Change(f"{at} header {name}", "response header added", breaking=False)


def _access_changes(at: str, old: Any, new: Any) -> Iterator[Change]:
    """`x-access` is the operation's access rule: `public`, `authenticated` or
    `permission:<name>`. A looser rule breaks no client; any other change may."""
    if old == new:
        return
    looser = new == "public" or (
        new == "authenticated" and isinstance(old, str) and old.startswith("permission:")
    )
    yield Change(at, f"access rule changed from {old} to {new}", breaking=not looser)
