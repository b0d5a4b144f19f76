"""The contracts corpus: deliberate edits of the committed OpenAPI document and of a published
event schema. Every breaking edit must be caught with the expected problem; no safe edit may
be flagged (it is still listed as a change).

Each edit is a JSON Patch (RFC 6902) on the real snapshot, so the corpus follows the API as
it grows; a patch that no longer applies fails loudly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from mercato.core.contracts import schema_changes
from mercato.core.openapi_contracts import openapi_changes

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = json.loads((ROOT / "docs" / "openapi.json").read_text())
EVENT = json.loads((ROOT / "schemas" / "events" / "order.created.v1.json").read_text())

S = "/components/schemas"


def op(path: str, method: str) -> str:
    """JSON pointer of an operation (`/` in the path is escaped as `~1`)."""
    return "/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


PRODUCTS, PRODUCT = op("/api/v1/products", "get"), op("/api/v1/products/{product_id}", "get")
CREATE_PRODUCT = op("/api/v1/products", "post")
ROTATE = op("/api/v1/webhooks/subscriptions/{subscription_id}/rotate-secret", "post")
LIMIT = f"{PRODUCTS}/parameters/7"  # ?limit=, an integer from 1 to 100
QUERY = f"{PRODUCTS}/parameters/0"  # ?q=, string up to 200 or null
HEADER = {"in": "header", "name": "X-Tenant", "schema": {"type": "string"}}

# (target, patch, the breaking problem expected, as "location: message")
BREAKING: dict[str, tuple[str, list[dict[str, Any]], str]] = {
    # Paths, operations, statuses, parameters, bodies, access.
    "path removed": (
        "openapi",
        [{"op": "remove", "path": op("/api/v1/roles/{name}", "")[:-1]}],
        "/api/v1/roles/{name}: path removed",
    ),
    "operation removed": (
        "openapi",
        [{"op": "remove", "path": op("/api/v1/products/{product_id}", "delete")}],
        "DELETE /api/v1/products/{product_id}: operation removed",
    ),
    "response status removed": (
        "openapi",
        [{"op": "remove", "path": f"{CREATE_PRODUCT}/responses/201"}],
        "POST /api/v1/products 201 response: response status removed",
    ),
    "response media type removed": (
        "openapi",
        [{"op": "remove", "path": f"{PRODUCT}/responses/200/content/application~1json"}],
        "GET /api/v1/products/{product_id} 200 response (application/json): media type removed",
    ),
    "query parameter removed": (
        "openapi",
        [{"op": "remove", "path": QUERY}],
        "GET /api/v1/products query parameter q: parameter removed",
    ),
    "new required header parameter": (
        "openapi",
        [{"op": "add", "path": f"{PRODUCTS}/parameters/-", "value": {**HEADER, "required": True}}],
        "GET /api/v1/products header parameter x-tenant: new required parameter",
    ),
    "optional parameter made required": (
        "openapi",
        [{"op": "add", "path": f"{LIMIT}/required", "value": True}],
        "GET /api/v1/products query parameter limit: parameter is now required",
    ),
    "request body made required": (
        "openapi",
        [{"op": "add", "path": f"{ROTATE}/requestBody/required", "value": True}],
        "POST /api/v1/webhooks/subscriptions/{subscription_id}/rotate-secret request body: "
        "request body is now required",
    ),
    "access rule tightened": (
        "openapi",
        [{"op": "replace", "path": f"{PRODUCTS}/x-access", "value": "authenticated"}],
        "GET /api/v1/products: access rule changed from public to authenticated",
    ),
    # Request schemas: narrower is breaking.
    "new required request field": (
        "openapi",
        [
            {"op": "add", "path": f"{S}/LineIn/properties/note", "value": {"type": "string"}},
            {"op": "add", "path": f"{S}/LineIn/required/-", "value": "note"},
        ],
        "request schema LineIn $.note: new required field",
    ),
    "optional request field made required": (
        "openapi",
        [{"op": "add", "path": f"{S}/ProductCreate/required/-", "value": "brand"}],
        "request schema ProductCreate $.brand: field is now required",
    ),
    "maxLength lowered": (
        "openapi",
        [{"op": "replace", "path": f"{S}/ProductCreate/properties/name/maxLength", "value": 100}],
        "request schema ProductCreate $.name: maxLength lowered from 200 to 100",
    ),
    "minLength raised": (
        "openapi",
        [{"op": "replace", "path": f"{S}/ProductCreate/properties/sku/minLength", "value": 3}],
        "request schema ProductCreate $.sku: minLength raised from 1 to 3",
    ),
    "minimum raised": (
        "openapi",
        [{"op": "replace", "path": f"{S}/LineIn/properties/quantity/minimum", "value": 2}],
        "request schema LineIn $.quantity: minimum raised from 1.0 to 2",
    ),
    "maximum lowered on a parameter": (
        "openapi",
        [{"op": "replace", "path": f"{LIMIT}/schema/maximum", "value": 50}],
        "GET /api/v1/products query parameter limit $: maximum lowered from 100 to 50",
    ),
    "maxItems lowered": (
        "openapi",
        [{"op": "replace", "path": f"{S}/OrderCreate/properties/lines/maxItems", "value": 10}],
        "request schema OrderCreate $.lines: maxItems lowered from 50 to 10",
    ),
    "pattern added": (
        "openapi",
        [
            {
                "op": "add",
                "path": f"{S}/ProductCreate/properties/name/pattern",
                "value": "^[A-Za-z ]+$",
            }
        ],
        "request schema ProductCreate $.name: pattern '^[A-Za-z ]+$' added",
    ),
    "maxLength added inside a nullable parameter": (
        "openapi",
        [{"op": "replace", "path": f"{QUERY}/schema/anyOf/0/maxLength", "value": 20}],
        "GET /api/v1/products query parameter q $: maxLength lowered from 200 to 20",
    ),
    "request enum value removed": (
        "openapi",
        [{"op": "remove", "path": f"{S}/ProductSort/enum/5"}],
        "request schema ProductSort $: enum values removed: ['relevance']",
    ),
    "request field no longer nullable": (
        "openapi",
        [{"op": "remove", "path": f"{S}/ProductCreate/properties/brand/anyOf/1"}],
        "request schema ProductCreate $.brand: type changed from ['null', 'string'] to ['string']",
    ),
    "request field type changed": (
        "openapi",
        [{"op": "replace", "path": f"{S}/LineIn/properties/quantity/type", "value": "string"}],
        "request schema LineIn $.quantity: type changed from ['integer'] to ['string']",
    ),
    "request field removed": (
        "openapi",
        [{"op": "remove", "path": f"{S}/ProductCreate/properties/gtin"}],
        "request schema ProductCreate $.gtin: field removed",
    ),
    # Response schemas: less, or different, is breaking.
    "response field removed": (
        "openapi",
        [{"op": "remove", "path": f"{S}/ProductOut/properties/brand"}],
        "response schema ProductOut $.brand: field removed",
    ),
    "response field type changed": (
        "openapi",
        [{"op": "replace", "path": f"{S}/OrderOut/properties/item_count/type", "value": "string"}],
        "response schema OrderOut $.item_count: type changed from ['integer'] to ['string']",
    ),
    "response field made nullable": (
        "openapi",
        [
            {
                "op": "replace",
                "path": f"{S}/OrderOut/properties/item_count",
                "value": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            }
        ],
        "response schema OrderOut $.item_count: type changed from ['integer'] to ['integer', 'null']",
    ),
    "response field no longer required": (
        "openapi",
        [{"op": "remove", "path": f"{S}/LineOut/required/0"}],
        "response schema LineOut $.product_id: field is no longer required",
    ),
    "response enum value removed": (
        "openapi",
        [{"op": "remove", "path": f"{S}/Status/enum/6"}],
        "response schema Status $: enum values removed: ['partially_refunded']",
    ),
    # Event schemas (checked both ways).
    "event field removed": (
        "event",
        [{"op": "remove", "path": "/properties/total"}],
        "$.total: field removed",
    ),
    "event enum value removed": (
        "event",
        [{"op": "remove", "path": "/$defs/Status/enum/0"}],
        "#/$defs/Status $: enum values removed: ['pending_payment']",
    ),
    "event field made nullable": (
        "event",
        [
            {
                "op": "replace",
                "path": "/$defs/LineOut/properties/quantity",
                "value": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            }
        ],
        "#/$defs/LineOut $.quantity: type changed from ['integer'] to ['integer', 'null']",
    ),
}

SAFE: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "path added": ("openapi", [{"op": "add", "path": op("/api/v1/ping", "")[:-1], "value": {}}]),
    "operation added": (
        "openapi",
        [{"op": "add", "path": op("/api/v1/roles/{name}", "put"), "value": {"responses": {}}}],
    ),
    "response status added": (
        "openapi",
        [{"op": "add", "path": f"{PRODUCT}/responses/410", "value": {"description": "Gone"}}],
    ),
    "new optional parameter": (
        "openapi",
        [{"op": "add", "path": f"{PRODUCTS}/parameters/-", "value": {**HEADER, "required": False}}],
    ),
    "required parameter made optional": (
        "openapi",
        [{"op": "replace", "path": f"{PRODUCT}/parameters/0/required", "value": False}],
    ),
    "access rule loosened": (
        "openapi",
        [{"op": "replace", "path": f"{CREATE_PRODUCT}/x-access", "value": "authenticated"}],
    ),
    "new optional request field": (
        "openapi",
        [{"op": "add", "path": f"{S}/LineIn/properties/note", "value": {"type": "string"}}],
    ),
    "required request field made optional": (
        "openapi",
        [{"op": "remove", "path": f"{S}/ProductCreate/required/2"}],
    ),
    "maxLength raised": (
        "openapi",
        [{"op": "replace", "path": f"{S}/ProductCreate/properties/name/maxLength", "value": 400}],
    ),
    "minimum lowered": (
        "openapi",
        [{"op": "replace", "path": f"{LIMIT}/schema/minimum", "value": 0}],
    ),
    "pattern removed": (
        "openapi",
        [{"op": "remove", "path": f"{S}/ProductCreate/properties/sku/pattern"}],
    ),
    "request field made nullable": (
        "openapi",
        [
            {
                "op": "replace",
                "path": f"{S}/ProductCreate/properties/name",
                "value": {
                    "anyOf": [
                        {"type": "string", "maxLength": 200, "minLength": 1},
                        {"type": "null"},
                    ]
                },
            }
        ],
    ),
    "request integer widened to number": (
        "openapi",
        [{"op": "replace", "path": f"{S}/LineIn/properties/quantity/type", "value": "number"}],
    ),
    "request enum value added": (
        "openapi",
        [{"op": "add", "path": f"{S}/ProductSort/enum/-", "value": "popular"}],
    ),
    "new response field": (
        "openapi",
        [{"op": "add", "path": f"{S}/ProductOut/properties/weight", "value": {"type": "integer"}}],
    ),
    "response field no longer nullable": (
        "openapi",
        [
            {
                "op": "replace",
                "path": f"{S}/ProductOut/properties/brand",
                "value": {"type": "string"},
            }
        ],
    ),
    "descriptions and titles edited": (
        "openapi",
        [
            {"op": "replace", "path": f"{S}/ProductOut/title", "value": "Product"},
            {"op": "add", "path": f"{PRODUCTS}/description", "value": "Lists products."},
        ],
    ),
    "event optional field added": (
        "event",
        [{"op": "add", "path": "/properties/channel", "value": {"type": "string"}}],
    ),
    "event enum value added": (
        "event",
        [{"op": "add", "path": "/$defs/Status/enum/-", "value": "on_hold"}],
    ),
}


def changes(target: str, patch: list[dict[str, Any]]) -> list[str]:
    """Breaking problems and all changes of the patched snapshot against the committed one."""
    original = OPENAPI if target == "openapi" else EVENT
    edited = jsonpatch.apply_patch(original, patch)
    if target == "openapi":
        return [f"{c.breaking}|{c}" for c in openapi_changes(original, edited)]
    return [f"{c.breaking}|{c}" for c in schema_changes(original, edited)]


@pytest.mark.parametrize("name", sorted(BREAKING))
def test_every_breaking_edit_is_caught(name: str) -> None:
    target, patch, expected = BREAKING[name]
    found = changes(target, patch)
    assert f"True|{expected}" in found, found


@pytest.mark.parametrize("name", sorted(SAFE))
def test_no_safe_edit_is_flagged(name: str) -> None:
    target, patch = SAFE[name]
    found = changes(target, patch)
    # Every safe edit is still listed, except wording, which is no part of the contract.
    assert found or name == "descriptions and titles edited"
    assert [line for line in found if line.startswith("True|")] == []


def test_the_committed_snapshots_compare_equal_to_themselves() -> None:
    assert openapi_changes(OPENAPI, OPENAPI) == []
    assert schema_changes(EVENT, EVENT) == []


def test_the_corpus_covers_every_kind_in_the_issue() -> None:
    # removed path, operation, response field or enum value; changed type; new required
    # request field; narrowed constraints: each has at least one breaking edit.
    messages = " ".join(expected for _, _, expected in BREAKING.values())
    for kind in (
        "path removed",
        "operation removed",
        "field removed",
        "enum values removed",
        "type changed",
        "new required field",
        "lowered",
        "raised",
        "added",
    ):
        assert kind in messages, kind
    assert len(BREAKING) >= 20
    assert len(SAFE) >= 15
