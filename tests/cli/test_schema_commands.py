"""`mercato schema check | docs | lint`, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mercato.cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.json"
EVENTS = ROOT / "schemas" / "events"


def check(openapi: Path, events: Path = EVENTS) -> tuple[int, str]:
    result = runner.invoke(
        app, ["schema", "check", "--openapi", str(openapi), "--events", str(events)]
    )
    return result.exit_code, " ".join(result.output.split())


def test_check_passes_on_the_committed_contracts() -> None:
    code, output = check(OPENAPI)
    assert code == 0, output
    assert "match the published contracts" in output


def test_check_fails_on_a_breaking_change_and_lists_it(tmp_path: Path) -> None:
    published = json.loads(OPENAPI.read_text())
    published["paths"]["/api/v1/legacy"] = {"get": {"responses": {"200": {}}}}
    published["components"]["schemas"]["ProductOut"]["properties"]["legacy_code"] = {
        "type": "string"
    }
    (tmp_path / "openapi.json").write_text(json.dumps(published))

    code, output = check(tmp_path / "openapi.json")
    assert code == 1
    assert "breaking /api/v1/legacy: path removed" in output
    assert "breaking response schema ProductOut $.legacy_code: field removed" in output
    assert "2 breaking changes" in output


def test_compatible_changes_are_listed_and_pass(tmp_path: Path) -> None:
    published = json.loads(OPENAPI.read_text())
    del published["paths"]["/api/v1/roles/{name}"]  # the live API has it: an addition
    (tmp_path / "openapi.json").write_text(json.dumps(published))
    events = tmp_path / "events"
    events.mkdir()
    for path in EVENTS.glob("*.json"):
        if path.name != "order.paid.v1.json":  # a new event schema, from the live side
            (events / path.name).write_text(path.read_text())

    code, output = check(tmp_path / "openapi.json", events)
    assert code == 0, output
    assert "compatible /api/v1/roles/{name}: path added" in output
    assert "compatible order.paid.v1.json: new event schema" in output


def test_a_published_event_schema_that_is_no_longer_produced_breaks(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    (events / "order.shipped.v1.json").write_text(json.dumps({"type": "object"}))
    code, output = check(OPENAPI, events)
    assert code == 1
    assert "order.shipped.v1.json: published schema no longer produced" in output


def test_lint_passes_on_the_migrations() -> None:
    result = runner.invoke(app, ["schema", "lint"])
    assert result.exit_code == 0, result.output


def test_docs_writes_the_committed_document(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    output = tmp_path / "schema.md"
    preamble = ROOT / "docs" / "schema.preamble.md"
    result = runner.invoke(
        app, ["schema", "docs", "--output", str(output), "--preamble", str(preamble)]
    )
    assert result.exit_code == 0, result.output
    assert output.read_text() == (ROOT / "docs" / "schema.md").read_text()
