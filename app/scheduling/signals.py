"""Wake the dispatcher when a tenant has new work, and when a job ends.

On PostgreSQL a ``NOTIFY`` is sent in the same transaction as the change, so
the dispatcher hears of a job exactly when it commits (never before: the
outbox). On the embedded default the dispatcher runs in the same process and
an in-process bus carries the same news, published after the commit.
"""
from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db import AFTER_COMMIT

__all__ = ["CHANNEL", "WAKE", "COMPANION_UP", "CLAIMED", "announce", "ended", "ended_payloads", "parse_ended",
           "claimed", "parse_claimed", "bus", "LocalBus"]

#: The PostgreSQL channel the dispatcher listens on; the payload is a tenant id.
CHANNEL = "fairq_jobs"
#: Payloads that start with this report jobs that left flight, ``~<id>:<run seconds>,...``, and
#: say no tenant has new work (a tenant id never starts with it).
WAKE = "~"
#: The payload a dispatcher companion sends when it comes up: the leading thread hands over at once.
COMPANION_UP = "~companion"
#: Payloads that start with this report jobs a worker claimed (their messages left the broker):
#: ``~^<id>,<id>,...``.
CLAIMED = "~^"


class LocalBus:
    """Tenants with news, for a dispatcher in the same process."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: set[str] = set()

    def publish(self, tenant_ids) -> None:
        with self._condition:
            self._pending.update(tenant_ids)
            self._condition.notify_all()

    def wait(self, timeout: float) -> set[str]:
        """The tenants announced since the last call (waiting up to ``timeout`` for one)."""
        with self._condition:
            if not self._pending:
                self._condition.wait(timeout)
            pending, self._pending = self._pending, set()
            return pending


#: The process's bus.
bus = LocalBus()


_NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', :tenant)")


def announce(target: sa.Connection | Session, *tenant_ids: str) -> None:
    """Tell the dispatcher, once ``target``'s transaction commits, that these tenants have news."""
    if not tenant_ids:
        return
    dialect = target.bind.dialect.name if isinstance(target, Session) else target.dialect.name
    if dialect == "postgresql":
        for tenant_id in tenant_ids:
            target.execute(_NOTIFY, {"tenant": tenant_id})
        return
    callbacks = target.info.setdefault(AFTER_COMMIT, [])
    for callback in callbacks:
        if isinstance(callback, _Publish):
            callback.tenants.update(tenant_ids)
            return
    callbacks.append(_Publish(set(tenant_ids)))


class _Publish:
    """An after-commit callback that publishes the tenants of one transaction on the bus."""

    def __init__(self, tenants: set[str]) -> None:
        self.tenants = tenants

    def __call__(self) -> None:
        bus.publish(self.tenants)


def ended(target: sa.Connection | Session, jobs: list[tuple[int, float]]) -> None:
    """Tell the dispatcher, once the transaction commits, that these jobs left flight: (id, run seconds)."""
    announce(target, *ended_payloads(jobs))


def ended_payloads(jobs: list[tuple[int, float]]) -> list[str]:
    """The payloads that report these jobs (a NOTIFY payload holds at most 8,000 bytes)."""
    return [
        WAKE + ",".join(f"{job_id}:{seconds:.4f}" for job_id, seconds in jobs[start:start + 200])
        for start in range(0, len(jobs), 200)
    ]


def parse_ended(payload: str) -> list[tuple[int, float]]:
    """The (job id, run seconds) pairs of an :func:`ended` payload."""
    pairs = []
    for part in payload[len(WAKE):].split(","):
        if part:
            job_id, _, seconds = part.partition(":")
            pairs.append((int(job_id), float(seconds or 0)))
    return pairs


def claimed(target: sa.Connection | Session, job_ids: list[int]) -> None:
    """Tell the dispatcher, once the transaction commits, that workers claimed these jobs."""
    announce(target, *(CLAIMED + ",".join(map(str, job_ids[start:start + 500]))
                       for start in range(0, len(job_ids), 500)))


def parse_claimed(payload: str) -> list[int]:
    """The job ids of a :func:`claimed` payload."""
    return [int(part) for part in payload[len(CLAIMED):].split(",") if part]
