"""How many jobs wait, run and lie dead, per tenant and kind, and the tenants' plans: cheap
aggregates for metrics."""
from __future__ import annotations

import sqlalchemy as sa

from app.db import Database
from app.scheduling.models import Job
from app.tenancy.models import Tenant

__all__ = ["job_counts", "tenant_plans", "COUNTED_STATES"]

jobs = Job.__table__

#: The states counted (the finished ones but ``dead`` would grow without end).
COUNTED_STATES = ("queued", "failed", "dispatched", "running", "dead")

_COUNTS = (
    sa.select(jobs.c.tenant_id, jobs.c.kind, jobs.c.state, sa.func.count())
    .where(jobs.c.state.in_(COUNTED_STATES))
    .group_by(jobs.c.tenant_id, jobs.c.kind, jobs.c.state)
)


def job_counts(db: Database) -> list[tuple[str, str, str, int]]:
    """(tenant, kind, state, jobs) for every state of :data:`COUNTED_STATES` (one statement)."""
    with db.system() as connection:
        return [tuple(row) for row in connection.execute(_COUNTS)]


def tenant_plans(db: Database) -> dict[str, str]:
    """Every tenant's plan."""
    tenants = Tenant.__table__
    with db.system() as connection:
        return dict(connection.execute(sa.select(tenants.c.id, tenants.c.plan)).all())
