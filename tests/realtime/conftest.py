from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import uvicorn
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from mercato.app import create_app
from mercato.core.database import Database
from mercato.events import EventDraft, record_events
from tests.settings import make_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(database_url: str, **settings: Any) -> AsyncIterator[str]:
    """The app on a real port (uvicorn, in this process), with its own pool and relay."""
    app = create_app(make_settings(database_url=database_url, **settings))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="websockets-sansio",
            ws_per_message_deflate=False,  # as `mercato serve`
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class StreamClient:
    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(orjson.dumps(message).decode())

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(
            await asyncio.wait_for(self.connection.recv(), timeout)
        )
        return message

    async def subscribe(self, topics: list[str], after: int | None = None) -> dict[str, Any]:
        await self.send(
            {
                "type": "subscribe",
                "topics": topics,
                **({"after": after} if after is not None else {}),
            }
        )
        while True:
            message = await self.receive()
            if message["type"] == "subscribed":
                return message

    async def events(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        while len(received) < count:
            message = await self.receive(timeout)
            if message["type"] == "event":
                received.append(message)
        return received


@asynccontextmanager
async def stream_client(
    address: str, *, reads: bool = True, **options: Any
) -> AsyncIterator[StreamClient]:
    """A stream client; `reads=False` makes one that barely takes anything off its socket."""
    if not reads:
        host, port = address.split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        options.update(sock=sock, max_queue=1, max_size=2**20)
    async with websockets.connect(f"ws://{address}/api/v1/stream", **options) as connection:
        yield StreamClient(connection)


@pytest.fixture
async def write_events(fresh_db_url: str) -> AsyncIterator[Callable[..., Any]]:
    db = await Database.connect(fresh_db_url, min_size=1, max_size=4)

    async def write(
        count: int, *, payload_bytes: int = 100, aggregate_id: str | None = None
    ) -> None:
        drafts = [
            EventDraft(
                type="product.updated",
                aggregate_type="product",
                aggregate_id=aggregate_id or str(uuid.uuid4()),
                aggregate_version=n + 1,
                payload={"blob": "x" * payload_bytes},
            )
            for n in range(count)
        ]
        async with db.transaction() as conn:
            await record_events(conn, drafts)

    yield write
    await db.close()


class StalledClient:
    """A client that subscribes and then reads nothing, over a raw socket with a tiny
    receive buffer (client libraries keep reading into memory whatever they are told)."""

    def __init__(self, address: str) -> None:
        host, port = address.split(":")
        self._address = (host, int(port))
        self._protocol = ClientProtocol(parse_uri(f"ws://{address}/api/v1/stream"), max_size=2**22)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._sock.setblocking(False)

    async def _flush(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                await asyncio.get_running_loop().sock_sendall(self._sock, chunk)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self._sock, self._address)
        self._protocol.send_request(self._protocol.connect())
        await self._flush()
        while not any(isinstance(e, Response) for e in self._protocol.events_received()):
            self._protocol.receive_data(await loop.sock_recv(self._sock, 65_536))

    async def send(self, message: dict[str, Any]) -> None:
        self._protocol.send_text(orjson.dumps(message))
        await self._flush()

    async def read_until_closed(self) -> tuple[list[dict[str, Any]], int | None]:
        """Now read everything the server sent, up to its close frame."""
        loop = asyncio.get_running_loop()
        messages: list[dict[str, Any]] = []
        while self._protocol.close_code is None:
            data = await asyncio.wait_for(loop.sock_recv(self._sock, 1 << 20), 15)
            if not data:
                self._protocol.receive_eof()
                break
            self._protocol.receive_data(data)
            for event in self._protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    messages.append(orjson.loads(event.data))
        self._sock.close()
        return messages, self._protocol.close_code
