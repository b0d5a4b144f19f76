"""The app's process-wide start-up work."""

from __future__ import annotations

import gc

from asgi_lifespan import LifespanManager

from mercato.app import create_app
from mercato.core.config import Environment
from tests.settings import make_settings


async def test_a_server_freezes_its_start_up_heap_and_tests_do_not(fresh_db_url: str) -> None:
    gc.unfreeze()
    quiet = {"database_url": fresh_db_url, "relay_in_process": False}
    async with LifespanManager(create_app(make_settings(**quiet))):
        assert gc.get_freeze_count() == 0
    try:
        server = make_settings(environment=Environment.DEVELOPMENT, **quiet)
        async with LifespanManager(create_app(server)):
            # Full collections no longer walk what start-up built (it lives as long as the
            # process); see app._freeze_startup_heap.
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
