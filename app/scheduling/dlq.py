"""Dead letters: jobs with no retry left, to inspect, replay or purge.

A dead job's row keeps everything needed to replay it (kind, payload,
priority, tenant), so replay works after Dramatiq has dropped the message
from RabbitMQ's dead-letter queue (it does after 7 days). Replay puts the job
back through the fair scheduler; both replay and purge also remove the job's
message from the broker's dead-letter queue, so it is never seen twice.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from app.db import Database, get_db
from app.errors import Invalid
from app.quota.plans import plan_for
from app.scheduling import signals
from app.scheduling.jobs import queue_for
from app.scheduling.kinds import JOBS_QUEUE
from app.scheduling.models import Job
from app.settings import Settings, get_settings
from app.tenancy.models import Tenant

__all__ = ["DeadFilter", "list_dead", "replay", "purge", "drop_broker_dead_letters"]

logger = logging.getLogger(__name__)

jobs = Job.__table__
tenants = Tenant.__table__

#: Dead jobs replayed per statement (SQLite allows 32,766 parameters in one).
REPLAY_BATCH = 1000


@dataclass(frozen=True)
class DeadFilter:
    """Which dead jobs: all, or of a tenant, a kind (with its family: ``campaign`` takes in
    ``campaign.deliver``), or these ids."""

    tenant_id: str | None = None
    kind: str | None = None
    job_ids: tuple[int, ...] = ()

    def where(self):
        clauses = [jobs.c.state == "dead"]
        if self.tenant_id:
            clauses.append(jobs.c.tenant_id == self.tenant_id)
        if self.kind:  # a kind and its family: ``campaign`` is campaign.run, campaign.deliver, ...
            clauses.append(sa.or_(jobs.c.kind == self.kind, jobs.c.kind.startswith(self.kind + ".", autoescape=True)))
        if self.job_ids:
            clauses.append(jobs.c.id.in_(self.job_ids))
        return sa.and_(*clauses)

    @property
    def everything(self) -> bool:
        return not (self.tenant_id or self.kind or self.job_ids)


def list_dead(selection: DeadFilter, *, after: int | None = None, limit: int = 100,
              db: Database | None = None) -> list[dict]:
    """Dead jobs, newest first."""
    query = sa.select(jobs).where(selection.where()).order_by(jobs.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(jobs.c.id < after)
    with (db or get_db()).system() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def replay(selection: DeadFilter, *, broker=None, db: Database | None = None, settings: Settings | None = None,
           allow_all: bool = False) -> list[int]:
    """Put dead jobs back in the queue with fresh attempts. Returns their ids.

    A job goes to the queue of its tenant's plan now, not the one it was enqueued for: a tenant
    that has left a dedicated plan since may have no worker on ``fairq.t.<tenant>`` any more.
    Its dead letter is dropped from where it died.

    Raises:
      Invalid: no filter was given and ``allow_all`` is not set.
    """
    _refuse_everything(selection, allow_all)
    settings = settings or get_settings()
    replayed: list[tuple[int, str, str | None]] = []
    with (db or get_db()).system() as connection:
        found = connection.execute(
            sa.select(jobs.c.id, jobs.c.tenant_id, jobs.c.queue, tenants.c.plan)
            .join(tenants, tenants.c.id == jobs.c.tenant_id)
            .where(selection.where()).order_by(jobs.c.id).with_for_update(of=jobs)
        ).all()
        routes: dict[str | None, list[int]] = defaultdict(list)
        for job_id, tenant_id, _, plan in found:
            routes[queue_for(tenant_id, plan_for(settings, plan))].append(job_id)
        died_in = {job_id: queue for job_id, _, queue, _ in found}
        for queue, job_ids in routes.items():
            for start in range(0, len(job_ids), REPLAY_BATCH):
                rows = connection.execute(
                    jobs.update().where(jobs.c.id.in_(job_ids[start:start + REPLAY_BATCH]), jobs.c.state == "dead")
                    .values(state="queued", attempts=0, not_before=None, finished_at=None, cancel_requested=False,
                            queue=queue)
                    .returning(jobs.c.id, jobs.c.tenant_id)
                ).all()
                replayed += [(job_id, tenant_id, died_in[job_id]) for job_id, tenant_id in rows]
        for tenant_id in {tenant for _, tenant, _ in replayed}:
            signals.announce(connection, tenant_id)
    ids = sorted(job_id for job_id, _, _ in replayed)
    if broker is not None:
        _drop_by_queue(broker, [(job_id, queue) for job_id, _, queue in replayed])
    for job_id, tenant_id, _ in replayed:
        logger.info("job %s replayed", job_id, extra={"job_id": job_id, "tenant_id": tenant_id, "state": "queued"})
    logger.info("replayed %d dead jobs", len(ids))
    return ids


def purge(selection: DeadFilter, *, broker=None, db: Database | None = None, allow_all: bool = False) -> list[int]:
    """Forget dead jobs for good: their rows and their dead-letter messages. Returns their ids."""
    _refuse_everything(selection, allow_all)
    with (db or get_db()).system() as connection:
        rows = connection.execute(jobs.delete().where(selection.where()).returning(jobs.c.id, jobs.c.queue)).all()
    if broker is not None:
        _drop_by_queue(broker, rows)
    ids = [job_id for job_id, _ in rows]
    logger.info("purged %d dead jobs", len(ids))
    return ids


def _refuse_everything(selection: DeadFilter, allow_all: bool) -> None:
    if selection.everything and not allow_all:
        raise Invalid("give a tenant, a kind or job ids (or ask for all of them explicitly)")


def _drop_by_queue(broker, jobs_and_queues: Sequence[tuple[int, str | None]]) -> None:
    """Drop the dead letters of these jobs from the dead-letter queue of the queue each one died in:
    the shared one, or its tenant's dedicated ``fairq.t.<tenant>``."""
    by_queue: dict[str, list[int]] = defaultdict(list)
    for job_id, queue in jobs_and_queues:
        by_queue[queue or JOBS_QUEUE].append(job_id)
    for queue, job_ids in sorted(by_queue.items()):
        drop_broker_dead_letters(broker, job_ids, queue=queue)


def drop_broker_dead_letters(broker, job_ids: Sequence[int], *, queue: str = JOBS_QUEUE) -> int:
    """Remove the dead-letter messages of these jobs from the broker; keep every other one."""
    wanted = set(job_ids)
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.stub import StubBroker

    if isinstance(broker, StubBroker):
        letters = broker.dead_letters_by_queue.get(queue, [])
        kept = [m for m in letters if not (m.args and m.args[0] in wanted)]
        dropped = len(letters) - len(kept)
        letters[:] = kept
        return dropped
    if isinstance(broker, RabbitmqBroker):
        return _drop_rabbitmq(broker, wanted, queue)
    return 0


def _drop_rabbitmq(broker, wanted: set[int], queue: str) -> int:
    import pika
    from dramatiq import Message
    from dramatiq.common import xq_name

    dead_queue = xq_name(queue)
    from app.scheduling.publisher import connection_parameters

    connection = pika.BlockingConnection(connection_parameters(broker))
    dropped = 0
    try:
        channel = connection.channel()
        waiting = channel.queue_declare(dead_queue, passive=True).method.message_count
        for _ in range(waiting):  # each message once: kept ones go to the back of the queue
            method, properties, body = channel.basic_get(dead_queue)
            if method is None:
                break
            message = Message.decode(body)
            if message.args and message.args[0] in wanted:
                dropped += 1
            else:
                channel.basic_publish("", dead_queue, body, properties)
            channel.basic_ack(method.delivery_tag)
    except pika.exceptions.ChannelClosedByBroker:
        pass  # no dead-letter queue yet: nothing to drop
    finally:
        connection.close()
    return dropped
