"""Which database a command talks to: DATABASE_URL, or the embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mercato.core.config import Settings
from mercato.core.embedded import EmbeddedPostgres


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """Yield a URL; start (and afterwards release) the embedded server when none is set."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    try:
        yield embedded.start()
    finally:
        embedded.stop()
