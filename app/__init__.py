"""fairq: a multi-tenant task queue with weighted fair share, priorities and per-tenant limits."""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from apiflask import APIFlask
from flask import g, request

from app import db, logs
from app.settings import Settings, get_settings, use_settings

__all__ = ["create_app", "__version__"]

__version__ = "0.1.0"

logger = logging.getLogger("app.http")

#: An incoming X-Request-ID is kept only if it looks like an id.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_app(
    test_config: Settings | dict[str, Any] | None = None, *, log_level: str | None = None
) -> APIFlask:
    """Build the WSGI application.

    Parameters:
      test_config: settings to use instead of the environment (a ``Settings``
        or overrides for it); they become the process's settings, so actors
        and services called by the app see the same ones.
      log_level: overrides ``FAIRQ_LOG_LEVEL`` (the CLI's admin commands log warnings only).

    Raises:
      SettingsError: a setting has a bad value.
    """
    if test_config is not None:
        settings = test_config if isinstance(test_config, Settings) else Settings.load(**test_config)
        use_settings(settings)
    else:
        settings = get_settings()

    app = APIFlask(
        __name__,
        title="fairq",
        version=__version__,
        spec_path="/openapi.json",
        docs_path="/docs",
        docs_ui="swagger-ui",
    )
    from app.api.docs import ASSETS_URL

    app.config.update(
        FAIRQ_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        VALIDATION_ERROR_STATUS_CODE=400,
        SWAGGER_UI_BUNDLE_JS=f"{ASSETS_URL}/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS=f"{ASSETS_URL}/swagger-ui-standalone-preset.js",
        SWAGGER_UI_CSS=f"{ASSETS_URL}/swagger-ui.css",
        INFO={
            "description": (
                "fairq runs every tenant's jobs through one fair scheduler. "
                "Errors are application/problem+json (RFC 9457) with a stable `type`."
            )
        },
    )
    app.json.sort_keys = False  # problem members in RFC order: type, title, status, detail
    app.security_schemes = {"BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    logs.configure_logging(log_level or settings.log_level)
    db.init_app(app, settings)
    _tenancy(app, settings)

    from app import tasks  # noqa: F401  (the broker and every job kind, which the API enqueues)
    from app.api import problems, register_blueprints

    problems.init_app(app)
    register_blueprints(app)
    from app import web

    web.init_app(app, settings)
    _request_ids(app)

    from app.cli import init_app as init_cli

    init_cli(app)
    return app


def _tenancy(app: APIFlask, settings: Settings) -> None:
    """Tokens, failed-login limits and the request's tenant-scoped session."""
    from app.tenancy import tokens
    from app.tenancy.identity import close_request_session
    from app.tenancy.login_limits import LoginLimits

    tokens.init_app(app, settings)
    app.extensions["fairq.login_limits"] = LoginLimits(settings)
    app.teardown_appcontext(close_request_session)


def _request_ids(app: APIFlask) -> None:
    """An ``X-Request-ID`` on every response, and one JSON log line per request."""

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        logs.bind(request_id=g.request_id)

    @app.after_request
    def _finish(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={"status": response.status_code, "duration_ms": round(elapsed * 1000, 2)},
        )
        return response

    @app.teardown_request
    def _forget(_exc: BaseException | None) -> None:
        logs.bind(request_id=None, tenant_id=None, user_id=None)
