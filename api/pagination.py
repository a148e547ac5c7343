"""Offset pagination shared by every list route: one count, one page, a link to the next."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session


def paginate(session: Session, request: Request, statement: Select, counted: Any, where: list[ColumnElement[bool]],
             limit: int, offset: int, to_out: Callable[[Any], Any]) -> dict[str, Any]:
    """Fields of a ``Page``: ``statement`` (already filtered by ``where`` and ordered) cut to one page,
    each row passed to ``to_out``, the total of ``counted`` rows matching ``where``, and the next page's URL."""
    total = session.scalar(select(func.count()).select_from(counted).where(*where)) or 0
    rows = session.execute(statement.limit(limit).offset(offset)).all()
    nxt = str(request.url.include_query_params(offset=offset + limit, limit=limit)) if offset + limit < total else None
    return {"items": [to_out(row) for row in rows], "total": total, "limit": limit, "offset": offset, "next": nxt}
