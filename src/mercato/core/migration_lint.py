"""Migration safety: lint the SQL of every migration for DDL that locks existing tables.

Alembic writes each revision's upgrade as SQL (offline mode, no database needed); squawk
(`squawk-cli` from PyPI, a binary in the virtualenv) reads it with the rules in
`migrations/squawk.toml`. Each revision is its own file, so a table created by an earlier
migration counts as existing, and one created earlier in the same migration does not.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from mercato.core.migrate import MIGRATIONS_DIR, alembic_config

SQUAWK_CONFIG = MIGRATIONS_DIR / "squawk.toml"

# Findings accepted in one migration, by revision and rule, each with the reason. Prefer
# fixing the migration (CREATE INDEX CONCURRENTLY in an autocommit block, a default on a new
# NOT NULL column, NOT VALID then VALIDATE); accept only what cannot lock a table in use.
ACCEPTED: dict[str, dict[str, str]] = {}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


def offline_sql(revision: str) -> str:
    """The SQL `alembic upgrade <previous>:<revision> --sql` prints for one revision."""
    config = alembic_config("postgresql://offline/unused")
    script = ScriptDirectory.from_config(config).get_revision(revision)
    assert script is not None, f"unknown revision {revision}"
    buffer = io.StringIO()
    config.output_buffer = buffer
    previous = script.down_revision
    command.upgrade(config, f"{previous}:{revision}" if previous else revision, sql=True)
    return buffer.getvalue()


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("postgresql://offline/unused"))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def lint_migrations() -> list[Finding]:
    """Findings in every migration, less the accepted ones."""
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory(prefix="mercato-squawk-") as directory:
        for revision in revisions():
            path = Path(directory) / f"{revision}.sql"
            path.write_text(offline_sql(revision))
            findings += lint_file(path, exclude=sorted(ACCEPTED.get(revision, {})))
    return findings


def lint_sql(sql: str, name: str = "migration.sql") -> list[Finding]:
    """Findings in one piece of migration SQL (the tests feed it deliberately bad SQL)."""
    with tempfile.TemporaryDirectory(prefix="mercato-squawk-") as directory:
        path = Path(directory) / name
        path.write_text(sql)
        return lint_file(path)


def lint_file(path: Path, exclude: list[str] | None = None) -> list[Finding]:
    sql = path.read_text()
    created = _tables_created(sql)
    return [
        finding
        for finding in _squawk(path, exclude)
        if _altered_table(sql, finding.line) not in created
    ]


# Squawk knows that an index on a table created earlier in the same file is harmless, but
# not an ALTER TABLE of one: it flags `ADD COLUMN … NOT NULL` there as if rows existed.
# No one else can see (or hold a lock on) a table its migration has just created, so a
# finding on such an ALTER is dropped. Alembic writes each statement's head on one line.
_CREATE_TABLE = re.compile(
    r"^\s*CREATE TABLE (?:IF NOT EXISTS )?(\S+)", re.IGNORECASE | re.MULTILINE
)
_ALTER_TABLE = re.compile(r"^\s*ALTER TABLE (?:IF EXISTS )?(?:ONLY )?(\S+)", re.IGNORECASE)


def _tables_created(sql: str) -> set[str]:
    return {match.group(1) for match in _CREATE_TABLE.finditer(sql)}


def _altered_table(sql: str, line: int) -> str | None:
    match = _ALTER_TABLE.match(sql.splitlines()[line - 1])
    return match.group(1) if match else None


def _squawk(path: Path, exclude: list[str] | None) -> list[Finding]:
    arguments = [squawk_binary(), "--config", str(SQUAWK_CONFIG), "--reporter", "json"]
    if exclude:
        arguments.append("--exclude=" + ",".join(exclude))
    # Exit status 1 means "found something"; the JSON report says what.
    result = subprocess.run(  # noqa: S603 (fixed arguments, our own file)
        [*arguments, str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"squawk failed on {path.name}: {result.stderr.strip()}")
    return [
        Finding(path.name, int(item["line"]) + 1, item["rule_name"], item["message"])
        for item in json.loads(result.stdout)
    ]


def squawk_binary() -> str:
    # The virtualenv's bin/ need not be on PATH (make calls .venv/bin/mercato directly).
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if found is None:
        raise RuntimeError("squawk is not installed: pip install -e '.[dev]' (squawk-cli)")
    return found
