"""CSV downloads of a tenant's rows, streamed in a session of their own (the stream outlives the request's)."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Response, stream_with_context
from sqlalchemy.orm import Session

from app.tenancy.scoping import tenant_session

__all__ = ["csv_download"]


def csv_download(tenant_id: str, export: Callable[[Session], Iterator[str]], filename: str) -> Response:
    """A ``text/csv`` attachment of what ``export(session)`` yields, read in a session of ``tenant_id``."""

    def rows():
        with tenant_session(tenant_id) as session:
            yield from export(session)

    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={filename}"})
