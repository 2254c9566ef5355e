"""Every error as ``application/problem+json`` (RFC 9457).

A problem's ``type`` is a stable URI reference, ``/problems/<slug>``; a client
branches on it, never on ``title`` or ``detail``. Views raise :class:`Problem`
(or let Flask raise an HTTP error); :func:`init_app` turns everything,
unhandled exceptions included, into the same shape. No stack trace leaks.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import Response, g, json
from werkzeug.exceptions import HTTPException

from app.errors import ServiceError

__all__ = ["Problem", "problem_response", "init_app", "PROBLEM_MEDIA_TYPE", "problem_type"]

logger = logging.getLogger(__name__)

#: The media type of every error body.
PROBLEM_MEDIA_TYPE = "application/problem+json"

#: The slug of each status fairq answers without a more specific type.
_STATUS_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
    500: "internal-error",
    503: "service-unavailable",
}


def problem_type(slug: str) -> str:
    """The ``type`` URI reference of the problem ``slug``."""
    return f"/problems/{slug}"


class Problem(HTTPError):
    """An error a view raises on purpose.

    Parameters:
      status: the HTTP status.
      slug: the stable last part of ``type`` (default: one per status).
      detail: a sentence for a person, specific to this occurrence.
      headers: extra response headers (``Retry-After``, ...).
      extra: more members of the problem object (``errors``, ``limit``, ...).
    """

    def __init__(
        self,
        status: int,
        *,
        slug: str | None = None,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, message=detail, headers=headers, extra_data=extra)
        self.slug = slug or _STATUS_SLUGS.get(status, "error")
        self.detail_text = detail


def problem_response(
    status: int,
    *,
    slug: str | None = None,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A ready ``problem+json`` response."""
    body: dict[str, Any] = {
        "type": problem_type(slug or _STATUS_SLUGS.get(status, "error")),
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    request_id = g.get("request_id")
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _from_http_error(error: HTTPError) -> Response:
    """APIFlask's error processor: HTTPError, abort(), validation and werkzeug errors."""
    status = error.status_code
    extra = dict(error.extra_data or {})
    if isinstance(error, Problem):
        return problem_response(
            status, slug=error.slug, detail=error.detail_text, headers=error.headers, **extra
        )
    detail = error.message
    if isinstance(error.detail, dict) and error.detail:
        # a request that failed validation: name each field and what is wrong with it
        extra["errors"] = _flatten_validation(error.detail)
        fields = ", ".join(sorted({e["field"] for e in extra["errors"]}))
        detail = f"invalid request: {fields}"
        return problem_response(400, slug="validation-error", detail=detail, headers=error.headers, **extra)
    if detail == HTTPStatus(status).phrase:
        detail = _DEFAULT_DETAILS.get(status)
    return problem_response(status, detail=detail, headers=error.headers, **extra)


_DEFAULT_DETAILS = {
    404: "No resource at this URL.",
    405: "This URL does not accept that method.",
    413: "The request body is too large.",
}


def _flatten_validation(detail: dict[str, Any]) -> list[dict[str, str]]:
    """``{"json": {"email": ["Missing data ..."]}}`` → ``[{"field": "email", ...}]``."""
    errors: list[dict[str, str]] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, path + [str(key)])
        elif isinstance(node, list) and all(isinstance(x, str) for x in node):
            for message in node:
                errors.append({"field": ".".join(path) or "body", "message": message})
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, path + [str(index)])
        else:
            errors.append({"field": ".".join(path) or "body", "message": str(node)})

    for location, fields in detail.items():
        walk(fields, [] if location in {"json", "form", "files"} else [str(location)])
    return errors


def _unhandled(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # werkzeug errors raised outside APIFlask's handler
        return problem_response(exc.code or 500, detail=exc.description)
    logger.exception("unhandled error")
    return problem_response(500, detail="An unexpected error occurred; it has been logged.")


def _service_error(exc: ServiceError) -> Response:
    return problem_response(exc.status, slug=exc.slug, detail=exc.detail, headers=exc.headers, **exc.extra)


def init_app(app: APIFlask) -> None:
    """Make every error response of ``app`` a problem."""
    app.error_processor(_from_http_error)
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(Exception, _unhandled)
