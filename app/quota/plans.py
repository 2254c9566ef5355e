"""Plans: what each tenant may run — rate, burst and concurrency per job kind, quotas, queue placement.

Built-in plans are below; ``FAIRQ_PLANS`` adds or replaces plans by name. A
tenant's ``plan`` column names its plan. The CLI and the API refuse a name that
is not a plan; one that stops being a plan later (taken out of ``FAIRQ_PLANS``)
falls back to ``default`` (logged), so it never stops a tenant's work.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from app.settings import KindLimitSpec, PlanSpec, Settings

__all__ = ["BUILTIN_PLANS", "KindLimits", "plans", "plan_for", "limits_for", "QUOTA_FIELDS"]

logger = logging.getLogger(__name__)

#: The plans fairq ships with. ``default`` limits nothing.
BUILTIN_PLANS: dict[str, PlanSpec] = {
    "default": PlanSpec(),
    "free": PlanSpec(rate=5, burst=10, concurrency=2, jobs_per_day=10_000, rows_per_month=1_000_000,
                     messages_per_day=1_000),
    "pro": PlanSpec(rate=200, burst=400, concurrency=16, rows_per_month=100_000_000),
    "dedicated": PlanSpec(dedicated_queue=True),
}

#: Quota fields of a plan: (usage metric, period) for each.
QUOTA_FIELDS = {
    "jobs_per_day": ("jobs", "day"),
    "jobs_per_month": ("jobs", "month"),
    "rows_per_day": ("rows", "day"),
    "rows_per_month": ("rows", "month"),
    "messages_per_day": ("messages", "day"),
    "messages_per_month": ("messages", "month"),
}


@dataclass(frozen=True)
class KindLimits:
    """The effective limits of one job kind for one plan (``None``: unlimited)."""

    rate: float | None
    burst: int | None
    concurrency: int | None


def plans(settings: Settings) -> dict[str, PlanSpec]:
    """Every plan by name: the built-in ones, then ``FAIRQ_PLANS``."""
    return {**BUILTIN_PLANS, **settings.plans}


def plan_for(settings: Settings, name: str) -> PlanSpec:
    """The plan called ``name`` (``default`` if there is none by that name)."""
    known = plans(settings)
    if name not in known:
        logger.warning("unknown plan %r: using the default plan", name)
        return known["default"]
    return known[name]


def limits_for(plan: PlanSpec, kind: str) -> KindLimits:
    """The limits of ``kind`` under ``plan``: each of the kind's own values, else the plan's."""
    own: KindLimitSpec = plan.kinds.get(kind) or KindLimitSpec()
    rate = own.rate if own.rate is not None else plan.rate
    burst = own.burst if own.burst is not None else (plan.burst if own.rate is None else None)
    if rate is not None and burst is None:
        burst = max(1, math.ceil(rate))
    concurrency = own.concurrency if own.concurrency is not None else plan.concurrency
    return KindLimits(rate=rate, burst=burst if rate is not None else None, concurrency=concurrency)
