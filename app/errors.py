"""Errors the service layer raises on purpose.

A :class:`ServiceError` carries what the caller needs to report it: the HTTP
API turns it into a problem (its ``status`` and ``slug``), the CLI into a
message and exit code 2. Services never import Flask to report an error.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ServiceError", "NotFound", "Conflict", "Forbidden", "Invalid"]


class ServiceError(Exception):
    """A failure a caller can act on.

    Parameters:
      detail: a sentence for a person.
      slug: the stable problem type (``/problems/<slug>``).
      status: the HTTP status the API answers with.
      headers: extra response headers (``Retry-After``, ...).
      extra: more members of the problem object.
    """

    status = 400
    slug = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        slug: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.slug = slug or self.slug
        self.status = status or self.status
        self.headers = headers or {}
        self.extra = extra


class Invalid(ServiceError):
    status = 400
    slug = "validation-error"


class Forbidden(ServiceError):
    status = 403
    slug = "forbidden"


class NotFound(ServiceError):
    status = 404
    slug = "not-found"


class Conflict(ServiceError):
    status = 409
    slug = "conflict"
