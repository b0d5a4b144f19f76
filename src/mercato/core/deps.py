"""FastAPI dependencies shared by every context's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mercato.core.config import Settings
from mercato.core.database import Database
from mercato.core.pagination import CursorCodec


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.db
    return database


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_cursor_codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


DB = Annotated[Database, Depends(get_database)]
Cursors = Annotated[CursorCodec, Depends(get_cursor_codec)]
