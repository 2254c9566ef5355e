"""Periodic jobs: exactly once per tick, and a scheduler thread for ``fairq up``.

Periodic actors are ordinary Dramatiq actors declared with periodiq's
``periodic=cron("...")`` option. ``periodiq app.tasks`` sends one message per
tick; in ``fairq up`` :class:`SchedulerThread` does the same job in a thread.
Either way :class:`PeriodicOnce` claims each (task, tick) in the database
before the actor runs, so two schedulers started by mistake still run a tick
once, and a tick that could not be claimed or came too late is logged.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime

import pendulum
import sqlalchemy as sa
from dramatiq import Actor, Middleware
from dramatiq.middleware import SkipMessage
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, UTCDateTime, get_db, utcnow

__all__ = ["PeriodicRun", "PeriodicOnce", "SchedulerThread", "periodic_actors"]

logger = logging.getLogger(__name__)


class PeriodicRun(Base):
    """One tick of one periodic task: claimed once, then its outcome."""

    __tablename__ = "periodic_runs"
    __table_args__ = (sa.UniqueConstraint("task", "scheduled_at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(200))
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(sa.String(20), default="running")
    error: Mapped[str | None] = mapped_column(sa.Text)


def _tick(broker, message) -> tuple[str, datetime] | None:
    actor = broker.actors.get(message.actor_name)
    if actor is None or "periodic" not in actor.options:
        return None
    scheduled_at = message.options.get("scheduled_at")
    if not scheduled_at:
        return None  # sent by hand (``fairq`` or a test): not a tick
    return message.actor_name, pendulum.parse(scheduled_at).in_timezone("UTC")


class PeriodicOnce(Middleware):
    """Claims each tick of a periodic actor in ``periodic_runs`` before it runs."""

    def before_process_message(self, broker, message) -> None:
        """Called before a message is processed.

        Raises:
          SkipMessage: the tick was already claimed by another scheduler's
            message, or it cannot be claimed because the database is down.
        """
        tick = _tick(broker, message)
        if tick is None:
            return
        task, scheduled_at = tick
        try:
            with get_db().session() as session:
                previous = session.scalar(
                    sa.select(sa.func.max(PeriodicRun.scheduled_at))
                    .where(PeriodicRun.task == task, PeriodicRun.scheduled_at < scheduled_at)
                )
                session.add(PeriodicRun(task=task, scheduled_at=scheduled_at))
        except IntegrityError:
            logger.info("tick %s of %s already ran; skipping the duplicate", scheduled_at, task)
            raise SkipMessage() from None
        except SQLAlchemyError:
            logger.error("tick %s of %s missed: database unavailable", scheduled_at, task)
            raise SkipMessage() from None
        if previous is not None:
            missed = missed_ticks(broker.actors[task].options["periodic"], previous, scheduled_at)
            if missed:
                logger.warning("%d ticks of %s were missed between %s and %s (an outage?)",
                               missed, task, previous, scheduled_at)

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        """Called after a message is processed: records the tick's outcome."""
        tick = _tick(broker, message)
        if tick is None:
            return
        task, scheduled_at = tick
        try:
            with get_db().session() as session:
                session.execute(
                    sa.update(PeriodicRun)
                    .where(
                        PeriodicRun.task == task,
                        PeriodicRun.scheduled_at == scheduled_at,
                        PeriodicRun.outcome == "running",
                    )
                    .values(
                        outcome="failed" if exception else "succeeded",
                        error=repr(exception)[:2000] if exception else None,
                        finished_at=utcnow(),
                    )
                )
        except SQLAlchemyError:
            logger.exception("could not record the outcome of tick %s of %s", scheduled_at, task)


def missed_ticks(spec, previous: datetime, current: datetime, *, limit: int = 10_000) -> int:
    """How many ticks of ``spec`` fell strictly between ``previous`` and ``current``."""
    missed = 0
    tick = pendulum.instance(previous)
    while missed < limit:
        tick = spec.next_valid_date(tick)
        if tick >= current:
            return missed
        missed += 1
    return missed


def periodic_actors(broker) -> list[Actor]:
    """The broker's actors that have a ``periodic`` schedule."""
    return [actor for actor in broker.actors.values() if "periodic" in actor.options]


class SchedulerThread(threading.Thread):
    """periodiq's scheduler as a thread, for ``fairq up``.

    ``periodiq``'s own loop waits on SIGALRM, which only the main thread can
    receive; this one waits on an event, so :meth:`stop` ends it at once.
    """

    def __init__(self, actors: list[Actor]) -> None:
        super().__init__(name="fairq-periodic", daemon=True)
        self.actors = actors
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        if not self.actors:
            return
        logger.info("periodic scheduler started: %s", ", ".join(a.actor_name for a in self.actors))
        now = pendulum.now("UTC").replace(microsecond=0)
        while not self._stopping.is_set():
            next_tick = min(a.options["periodic"].next_valid_date(now) for a in self.actors)
            delay = (next_tick - pendulum.now("UTC")).total_seconds()
            if delay > 0 and self._stopping.wait(delay):
                break
            for actor in self.actors:
                if actor.options["periodic"].validate(next_tick):
                    logger.info("scheduling %s at %s", actor.actor_name, next_tick)
                    actor.send_with_options(scheduled_at=str(next_tick))
            now = next_tick
