"""Keyset pagination: ``?after=<id>&limit=<n>``, answered with ``next`` (the id to continue after)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apiflask import Schema
from apiflask.fields import Integer, List, Nested
from apiflask.validators import Range

__all__ = ["PageIn", "page", "page_of"]


class PageIn(Schema):
    after = Integer(metadata={"description": "continue after this id (the previous page's `next`)"})
    limit = Integer(load_default=50, validate=Range(min=1, max=500))


def page(items: Sequence[Any], *, limit: int, key: str = "id") -> dict[str, Any]:
    """``{"items": ..., "next": <key of the last item> or None}`` for a page fetched with ``limit``."""
    return {"items": items, "next": getattr(items[-1], key) if len(items) == limit else None}


def page_of(item: type[Schema], name: str) -> type[Schema]:
    """The schema of a page of ``item``: ``{"items": [...], "next": ...}``.

    The items get a subclass of their own (``<name>Item``): APIFlask registers
    a schema used both nested and directly twice ("X" and "X1") otherwise.
    """
    own = type(f"{name}Item", (item,), {"__doc__": f"{item.__name__} in a list."})
    return type(f"{name}Page", (Schema,), {"items": List(Nested(own)), "next": Integer(allow_none=True)})
