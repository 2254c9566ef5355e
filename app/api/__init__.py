"""The HTTP API: thin blueprints that parse, authorise, call a module and serialise."""
from __future__ import annotations

from apiflask import APIFlask

__all__ = ["register_blueprints"]


def register_blueprints(app: APIFlask) -> None:
    """Register every blueprint of the API on ``app``."""
    from app.api.admin import bp as admin_bp
    from app.api.auth import bp as auth_bp
    from app.api.campaigns import bp as campaigns_bp
    from app.api.dlq import bp as dlq_bp
    from app.api.docs import bp as docs_bp
    from app.api.health import bp as health_bp
    from app.api.ingest import bp as ingest_bp
    from app.api.jobs import bp as jobs_bp
    from app.api.metrics import bp as metrics_bp
    from app.api.reconcile import bp as reconcile_bp
    from app.api.transactions import bp as transactions_bp
    from app.api.usage import bp as usage_bp
    from app.api.users import bp as users_bp

    for blueprint in (health_bp, docs_bp, auth_bp, users_bp, jobs_bp, ingest_bp, transactions_bp, usage_bp, admin_bp, dlq_bp,
                      metrics_bp, campaigns_bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(reconcile_bp)
