"""A lost response over a real socket: the connection closes with no answer, quietly."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette

from tests.sandbox.conftest import API_KEY, charges, confirm, create_intent, serving


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_lost_response_closes_a_real_connection(app: Starlette, http: str) -> None:
    async with serving(app, http) as url, httpx.AsyncClient(base_url=url) as client:
        client.headers["Authorization"] = f"Bearer {API_KEY}"
        intent = await create_intent(client)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await confirm(client, intent["id"], "pm_card_networkFailure", key="k")
        retry = await confirm(client, intent["id"], "pm_card_networkFailure", key="k")
        assert (retry.status_code, retry.json()["status"]) == (200, "succeeded")
        assert len(await charges(client)) == 1


async def test_a_dropped_response_is_not_logged_as_a_crash(app: Starlette) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        logger.addHandler(handler)  # after uvicorn has configured its loggers
        try:
            client.headers["Authorization"] = f"Bearer {API_KEY}"
            intent = await create_intent(client)
            with pytest.raises(httpx.RemoteProtocolError):
                await confirm(client, intent["id"], "pm_card_networkFailure")
        finally:
            logger.removeHandler(handler)
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []
