from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mercato.core.database import Database


@pytest.fixture
async def pooled_db(fresh_db_url: str) -> AsyncIterator[Database]:
    """A real pool on a database of the test's own: for tests that commit and race."""
    database = await Database.connect(fresh_db_url, min_size=1, max_size=24)
    yield database
    await database.close()
