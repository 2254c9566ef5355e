"""The HTTP API: thin blueprints that parse, authorise, call a module and serialise."""
from __future__ import annotations

from apiflask import APIFlask

__all__ = ["register_blueprints"]


def register_blueprints(app: APIFlask) -> None:
    """Register every blueprint of the API on ``app``."""
    from app.api.docs import bp as docs_bp
    from app.api.health import bp as health_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(docs_bp)
