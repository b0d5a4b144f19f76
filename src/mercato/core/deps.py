"""What route handlers take from the app: plain functions, not FastAPI dependencies.

Each `Depends()` costs tens of microseconds per request in FastAPI's resolver, more than a
primary-key read in PostgreSQL; handlers read these from `request.app.state` directly.
"""

from __future__ import annotations

from fastapi import Request

from mercato.core.database import Database
from mercato.core.pagination import CursorCodec


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def cursor_codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.cursor_codec
    return codec
