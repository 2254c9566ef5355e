"""``GET /metrics``: Prometheus metrics of the API process, and the gauges read from the database."""
from __future__ import annotations

import hmac

from apiflask import APIBlueprint
from flask import Response, current_app, request

from app.api.problems import Problem
from app.metrics.exposition import CONTENT_TYPE, render
from app.metrics.instruments import enable_multiprocess

bp = APIBlueprint("metrics", __name__, tag="Operations")


@bp.record_once
def _files_if_configured(state) -> None:
    """With ``FAIRQ_METRICS_DIR`` set, the API's processes (gunicorn workers) share their metrics there."""
    settings = state.app.config["FAIRQ_SETTINGS"]
    if settings.metrics_dir:
        enable_multiprocess(settings.metrics_dir)


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics (text format)",
        description="Needs `Authorization: Bearer <FAIRQ_METRICS_TOKEN>` when that setting is set.",
        responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}})
def metrics():
    token = current_app.config["FAIRQ_SETTINGS"].metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise Problem(401, slug="metrics-token-required", detail="send the metrics token as a bearer token",
                          headers={"WWW-Authenticate": "Bearer"})
    return Response(render(database=True), mimetype=None, content_type=CONTENT_TYPE)
