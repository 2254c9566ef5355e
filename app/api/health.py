"""``/healthz`` (the process is alive) and ``/readyz`` (every backend answers)."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, List, Nested, String
from flask import current_app

from app.api.problems import problem_response
from app.health import check_backends

bp = APIBlueprint("health", __name__, tag="Operations")


class CheckOut(Schema):
    backend = String(metadata={"description": "database, broker, redis or storage"})
    component = String(metadata={"description": "what serves it: PostgreSQL, SQLite, RabbitMQ, ..."})
    ok = Boolean()
    error = String(allow_none=True)


class ReadyOut(Schema):
    status = String()
    checks = List(Nested(CheckOut))


@bp.get("/healthz")
@bp.doc(summary="Liveness", description="Answers 200 while the process serves requests.")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
@bp.output(ReadyOut)
@bp.doc(
    summary="Readiness",
    description="Checks each configured backend; 503 problem naming every one that is down.",
    responses={503: "A backend is down"},
)
def readyz():
    checks = check_backends(current_app.config["FAIRQ_SETTINGS"])
    down = [c for c in checks if not c.ok]
    if down:
        names = ", ".join(f"{c.backend} ({c.component})" for c in down)
        return problem_response(
            503,
            slug="backend-unavailable",
            detail=f"not ready: {names} unreachable",
            checks=[c.__dict__ for c in checks],
        )
    return {"status": "ready", "checks": checks}
