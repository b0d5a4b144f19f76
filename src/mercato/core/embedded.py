"""The embedded PostgreSQL: a private server from the `pgserver` wheel, for a setup-free start.

The server keeps its data in a folder that is reused across runs. `pgserver` counts the
processes that use the folder and stops the server when the last of them exits, so a parent
(`mercato serve`) and its workers can share one server safely.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import structlog

# pgserver asks platformdirs for a runtime folder at import; the fallback it warns about
# is fine for a private development server.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
from pgserver import get_server  # type: ignore[attr-defined]  # noqa: E402

log = structlog.get_logger(__name__)

DATABASE_NAME = "mercato"
# The server listens on a Unix socket inside its data folder; sockets paths are limited to
# about 107 bytes, so a deep data folder is refused early with a clear message.
_MAX_SOCKET_DIR = 90


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve() / "pgdata"
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server and return a URL for the `mercato` database."""
        if len(str(self.data_dir)) > _MAX_SOCKET_DIR:
            raise RuntimeError(
                f"embedded data folder path is too long for a Unix socket: {self.data_dir}; "
                "set MERCATO_DATA_DIR to a shorter path"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "1 row" not in exists:
            self._server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        log.info("embedded_postgres_started", data_dir=str(self.data_dir))
        return f"postgresql://postgres@/{DATABASE_NAME}?host={self.data_dir}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
