"""The dispatcher: fills a small window of work in the broker, in fair order.

One dispatcher leads at a time (see :mod:`app.scheduling.leader`). Under
``dramatiq app.tasks`` on PostgreSQL it runs in a companion process of its own
(:mod:`app.scheduling.companion`), so the worker processes' interpreters are
left to the jobs; each worker process keeps a dispatcher thread standing by,
which leads only while no companion is up (and steps down when one comes).
With ``FAIRQ_DISPATCHER=thread``, in ``fairq up`` and on the embedded default,
the threads lead. Each round it:

1. hears which tenants have news (new jobs, finished jobs) — NOTIFY or the in-process bus;
2. hears which jobs workers claimed (their messages left the broker, so the
   window has room again: it holds jobs waiting in the broker, not running
   ones), and which in-flight jobs have ended, and charges their measured run
   time to their tenants (correcting the estimate charged at dispatch);
3. asks the fair queue (:mod:`app.scheduling.fairness`) for as many jobs as
   the window has room for, takes their rate-limit tokens in one batch, and
   gives back the ones refused;
4. publishes them in one confirmed batch, then marks them ``dispatched`` (the
   marks gather for a moment first, so that the jobs workers claimed meanwhile
   — most of them when busy — are not written twice).

A crash between 4's publish and its mark re-publishes the jobs later: delivery
is at-least-once, and the gate's claim lets only one copy run. Every few
seconds the leader also re-dispatches jobs whose lease expired and re-counts
the backlog (in case a notification was lost). On the in-process broker, whose
messages die with their process, the first leader of a process re-dispatches
at once every job that earlier processes left in flight (on PostgreSQL, only
those left ``dispatched``: see :mod:`app.scheduling.leader`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from dramatiq import Middleware

from app import metrics
from app.db import get_db, utcnow
from app.metrics.share import ShareWindow, shares
from app.quota import LimiterUnavailable, TakeRequest, make_buckets
from app.quota.buckets import BucketSpec
from app.quota.plans import limits_for, plan_for
from app.scheduling import signals
from app.scheduling.batcher import GroupCommit, Ticket
from app.scheduling.fairness import Candidate, FairQueue
from app.scheduling.hotpath import Dedicated
from app.scheduling.jobs import queue_for
from app.scheduling.kinds import kinds
from app.scheduling.leader import make_leadership
from app.scheduling.publisher import PublishError, make_publisher
from app.scheduling.store import Head, Store
from app.settings import Settings, get_settings

__all__ = ["Dispatcher", "DispatcherMiddleware"]

logger = logging.getLogger(__name__)

#: Seconds between attempts to become the leader.
LEADER_RETRY = 2.0
#: ... for a companion in its first seconds (HANDOVER), while the leading thread hands over to it.
COMPANION_RETRY = 0.2
HANDOVER = 10.0
#: Seconds between reloads of tenants' weights, plans and pauses.
TENANT_REFRESH = 2.0
#: Seconds between lease checks and backlog re-counts.
HOUSEKEEPING = 5.0
#: Longest wait for news while there is room in the window.
IDLE_WAIT = 0.5
#: Wait for news while the window is full (completions arrive as news too).
FULL_WAIT = 0.05
#: Weight of a new measurement in a kind's running-time estimate.
EWMA = 0.2
#: While tenants have work waiting, the share of the window that must be free before a round:
#: one publish and one update then carry several jobs instead of one.
BATCH_SHARE = 0.25
#: Seconds between sweeps for jobs that left flight unannounced (and the least age of one swept).
SWEEP = 1.0
#: Seconds between checks for waiting jobs (retry backoffs, deferrals) that came due.
DUE_CHECK = 0.25
#: Seconds between publications of the tenants' shares of worker time (metrics).
SHARE_PUBLISH = 1.0
#: Seconds between a worker thread's checks for a dispatcher companion (it defers to one).
COMPANION_CHECK = 2.0
#: Seconds the ``dispatched`` marks gather before they are written. A job a worker claimed since
#: its publish (most of them, on a busy system) is not written again (see ``Store.mark_dispatched``).
MARK_LINGER = 0.1


@dataclass
class InFlight:
    tenant_id: str
    kind: str
    estimate: float
    since: float = field(default_factory=time.monotonic)


class Dispatcher:
    """The leader's loop (see the module docstring). ``step()`` is one round, for tests."""

    def __init__(self, broker, settings: Settings, *, store: Store | None = None, publisher=None,
                 buckets=None, leadership=None, clock=time.time, defer_to_companion: bool = False) -> None:
        self.broker = broker
        self.settings = settings
        self.store = store or Store(get_db(settings))
        self.publisher = publisher or make_publisher(broker)
        self.buckets = buckets if buckets is not None else make_buckets(settings)  # an empty one is falsy
        self.leadership = leadership or make_leadership(settings.sqlalchemy_url)
        self.clock = clock
        #: a worker process's dispatcher: stands by while a companion is up (see the module docstring)
        self.defer_to_companion = defer_to_companion
        self._companion_at = 0.0
        self._started_at = time.monotonic()
        self.window = settings.dispatch_window
        #: while work is waiting, a round starts only once this many slots are free
        self.batch = max(1, int(self.window * BATCH_SHARE))
        self._backlogged = False
        self.queue = self._fair_queue()
        self.in_flight: dict[int, InFlight] = {}
        #: the jobs of ``in_flight`` still in the broker: published, not yet claimed by a worker
        self.unclaimed: set[int] = set()
        self.estimates: dict[str, float] = {name: k.cost_estimate for name, k in kinds().items()}
        self.blocked_until: dict[tuple[str, str], float] = {}
        self.plans: dict[str, str] = {}
        self.paused: set[str] = set()
        self._queues: dict[int, str | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tenants_at = 0.0
        self._housekeeping_at = 0.0
        self._last_due_check = utcnow()
        self._due_at = 0.0
        self._swept_at = 0.0
        self.dispatched = 0
        #: worker seconds per tenant over the metrics' share window
        self.share = ShareWindow(settings.metrics_share_window_seconds)
        self._shared_at = 0.0
        # marking jobs dispatched is off the critical path: the gate admits a job either way
        self._marks_on = Dedicated(self.store.db, name="fairq-dispatch-mark")
        self._marker = GroupCommit(self._mark, name="fairq-dispatch-mark", linger=MARK_LINGER)
        #: on RabbitMQ, batches are published by a thread of their own (see :meth:`_publish`)
        self._sender = (GroupCommit(self._send, name="fairq-dispatch-publish")
                        if getattr(self.publisher, "pipelined", False) else None)
        self._sending: list[tuple[Ticket, list[Candidate], datetime]] = []
        #: the jobs chosen so far in the round being chosen (see :meth:`_choose`)
        self._choosing: list[Candidate] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self.run, name="fairq-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.hand_over(timeout)
        self.publisher.close()
        self._marks_on.close()
        metrics.clear_shares()

    def hand_over(self, timeout: float = 10.0) -> None:
        """Stop leading, leaving the database as the next leader must find it: every job this one
        published is marked ``dispatched`` (or claimed) first. A job still ``queued`` after its
        publish looks waiting to the next leader, which would publish it again — a duplicate that
        the gate skips, but that takes a slot of the window and, for a rate-limited tenant, a token.
        (Every start of ``dramatiq app.tasks`` hands over, from a worker's thread to the companion;
        the marks gather for :data:`MARK_LINGER`, shorter than the companion's wait to lead, so
        this is a race rarely lost, not a measured cost.)"""
        if self._sender is not None:
            self._sender.drain(timeout)
            self._settle()
        if not self._marker.drain(timeout):
            logger.warning("jobs published but not yet marked dispatched at handover; the next leader may "
                           "publish them again (the gate runs one copy)")
        self.leadership.release()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.leadership.held:
                    if self._companion_up() or not self.leadership.try_acquire():
                        self._stop.wait(self._retry_after())
                        continue
                    self.become_leader()
                elif time.monotonic() - self._companion_at > COMPANION_CHECK and self._companion_up():
                    logger.info("a dispatcher companion is up: handing dispatching over to it")
                    self.hand_over()
                    continue
                self.step()
            except Exception:
                logger.exception("dispatcher round failed; retrying")
                self._stop.wait(1.0)

    def _fair_queue(self) -> FairQueue:
        return FairQueue(refill=self._refill, aging_seconds=self.settings.aging_seconds, clock=self.clock)

    def _retry_after(self) -> float:
        """Seconds until the next try to lead (a new companion tries often: it is being handed over to)."""
        handing_over = self.leadership.companion and time.monotonic() - self._started_at < HANDOVER
        return COMPANION_RETRY if handing_over else LEADER_RETRY

    def _companion_up(self) -> bool:
        """Whether this dispatcher should stand by for a companion."""
        if not self.defer_to_companion:
            return False
        self._companion_at = time.monotonic()
        return self.leadership.companion_alive()

    def become_leader(self) -> None:
        """Load what the previous leader knew: tenants, jobs in flight, the backlog."""
        logger.info("this process now leads dispatching (window %d)", self.window)
        if self._sender is not None:  # batches of an earlier leadership: settled before starting over
            self._sender.drain(30.0)
            self._settle()
        self.in_flight.clear()
        self.unclaimed.clear()
        # a fresh fair queue: jobs it buffered in an earlier leadership may have run since, under
        # another leader, and would be published again (the gate would skip them, but each took a
        # slot of the window: seen at a worker's stop, when its thread leads once the companion is gone)
        self.queue = self._fair_queue()
        self._refresh_tenants(force=True)
        if not getattr(self.publisher, "durable", True):
            # the in-process broker: the messages of the jobs earlier processes left in flight went
            # with them; left as they are, they would fill the window until their lease ran out.
            # Every earlier process is gone (SQLite's lock file says so), or, on PostgreSQL, which
            # cannot say, those left dispatched go back (a copy a live process still holds is
            # skipped by the gate), and those left running wait for their lease (see leader.py)
            if getattr(self.leadership, "predecessors_gone", False):
                self._lost(orphaned=("dispatched", "running"))
            elif getattr(self.leadership, "first_in_process", False):
                self._lost(orphaned=("dispatched",))
        counts: dict[str, int] = defaultdict(int)
        for job_id, tenant_id, kind, state in self.store.in_flight():
            self.in_flight[job_id] = InFlight(tenant_id, kind, self.estimates.get(kind, 0.05))
            if state == "dispatched":
                self.unclaimed.add(job_id)
            counts[tenant_id] += 1
        for tenant_id, count in counts.items():
            self.queue.set_in_flight(tenant_id, count)
        for tenant_id in self.store.backlog():
            self.queue.notify(tenant_id)

    # -- one round ---------------------------------------------------------------------------

    def step(self) -> int:
        """One round; returns how many jobs were dispatched."""
        self._settle()
        full = len(self.unclaimed) >= self.window
        for news in self.leadership.wait_for_news(FULL_WAIT if full else IDLE_WAIT):
            if news == signals.COMPANION_UP:
                self._companion_at = 0.0  # the run loop checks for it at once
            elif news.startswith(signals.CLAIMED):
                self.unclaimed.difference_update(signals.parse_claimed(news))
            elif news.startswith(signals.WAKE):
                for job_id, seconds in signals.parse_ended(news):
                    self._ended(job_id, seconds)
            else:
                self.queue.notify(news)
        self._refresh_tenants()
        if time.monotonic() - self._swept_at > SWEEP:
            self._sweep()
        if time.monotonic() - self._housekeeping_at > HOUSEKEEPING:
            self._housekeeping()
        if time.monotonic() - self._due_at > DUE_CHECK:
            self._due_at = time.monotonic()
            self._notify_due()
        if time.monotonic() - self._shared_at > SHARE_PUBLISH:
            self._publish_shares()
        free = self.window - len(self.unclaimed)
        if free <= 0 or (free < self.batch and self._backlogged):
            return 0  # wait for a few more to end: one round (one publish) for several jobs
        chosen = self._choose(free)
        self._backlogged = len(chosen) == free
        if not chosen:
            return 0
        self._publish(chosen)
        return len(chosen)

    def _choose(self, free: int) -> list[Candidate]:
        """Up to ``free`` jobs in fair order, each with its rate-limit token.

        Slots a rate-limited tenant could not use go to the others in the same round
        (work-conserving): a tenant refused tokens is blocked, and the queue is asked again.
        """
        chosen: list[Candidate] = []
        self._choosing = chosen  # not published yet, so still queued in the database: see _refill
        try:
            for _ in range(3):
                now = time.monotonic()
                batch = self.queue.select(free - len(chosen), blocked=lambda t, k: self._blocked(t, k, now))
                granted = self._take_tokens(batch)
                chosen += granted
                if len(granted) == len(batch) or len(chosen) >= free:
                    break
        finally:
            self._choosing = []
        return chosen

    def _blocked(self, tenant_id: str, kind: str, now: float) -> bool:
        return self.blocked_until.get((tenant_id, kind), 0) > now or self._at_kind_cap(tenant_id, kind)

    def _at_kind_cap(self, tenant_id: str, kind: str) -> bool:
        cap = limits_for(plan_for(self.settings, self.plans.get(tenant_id, "default")), kind).concurrency
        if cap is None:
            return False
        running = sum(1 for f in self.in_flight.values() if f.tenant_id == tenant_id and f.kind == kind)
        return running >= cap

    def _take_tokens(self, chosen: list[Candidate]) -> list[Candidate]:
        """Take a rate-limit token for each chosen job in one batch; give back the refused ones."""
        wanted: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
        specs: dict[tuple[str, str], BucketSpec] = {}
        for candidate in chosen:
            limits = limits_for(plan_for(self.settings, self.plans.get(candidate.tenant_id, "default")),
                                candidate.kind)
            if limits.rate is not None:
                key = (candidate.tenant_id, candidate.kind)
                wanted[key].append(candidate)
                specs[key] = BucketSpec(rate=limits.rate, burst=limits.burst or 1)
        if not wanted:
            return chosen
        keys = list(wanted)
        requests = [TakeRequest(f"t:{t}:k:{k}", specs[(t, k)], len(wanted[(t, k)])) for t, k in keys]
        try:
            granted = self.buckets.take(requests)
        except LimiterUnavailable:
            logger.warning("rate limiter unavailable: rate-limited jobs wait")
            granted = [0] * len(keys)
        refused: set[int] = set()
        for key, request, count in zip(keys, requests, granted):
            for candidate in wanted[key][count:]:
                refused.add(candidate.job_id)
            if count < request.count:
                metrics.job_deferred(key[0], "rate", request.count - count)
                try:
                    wait = self.buckets.wait_time(request.key, request.spec, 1)
                except LimiterUnavailable:
                    wait = 1.0
                self.blocked_until[key] = time.monotonic() + max(wait, 0.001)
        for candidate in reversed(chosen):
            if candidate.job_id in refused:
                self.queue.unselect(candidate)
        return [c for c in chosen if c.job_id not in refused]

    def _publish(self, chosen: list[Candidate]) -> None:
        """Send the chosen jobs. Through a pipelined publisher (RabbitMQ) the batch goes to the
        publishing thread and this thread goes on: the jobs count in flight (and in the window)
        at once, and :meth:`_settle` marks them or, should the publish fail, takes them back.
        Batches chosen while one is being committed go out together in the next transaction,
        so a slow commit makes batches larger, not dispatching slower."""
        by_kind = kinds()
        messages = []
        # the queue of the tenant's plan now: a job enqueued under another plan must not wait in a
        # dedicated queue whose workers were stopped with it (nor on the shared one). Where it differs
        # from the job's, the plans are read again: the job may be newer than this copy of them.
        stored = [self._queues.pop(candidate.job_id, None) for candidate in chosen]
        queues = [self._plan_queue(candidate) for candidate in chosen]
        if queues != stored:
            self._refresh_tenants(force=True)
            queues = [self._plan_queue(candidate) for candidate in chosen]
        moved: dict[str | None, list[int]] = defaultdict(list)
        for candidate, queue, before in zip(chosen, queues, stored):
            message = by_kind[candidate.kind].actor.message(candidate.job_id)
            if queue != before:
                moved[queue].append(candidate.job_id)
            if queue:
                message = message.copy(queue_name=queue)
            messages.append(message)
            self.in_flight[candidate.job_id] = InFlight(candidate.tenant_id, candidate.kind, candidate.cost)
            self.unclaimed.add(candidate.job_id)
        if moved:  # rare (a plan changed): the row says where the message goes, for its dead letter
            self.store.set_queues(moved)
        if self._sender is not None:
            self._sending.append((self._sender.request(messages), chosen, utcnow()))
            return
        try:
            self.publisher.publish(messages)
        except Exception as exc:
            # the in-process broker takes messages one by one: those sent before the failure are
            # in it, and taken back they would be published again (a pipelined publisher's batch
            # is all or nothing)
            sent = exc.sent if isinstance(exc, PublishError) else 0
            logger.error("publishing %d of %d jobs failed; they stay queued", len(messages) - sent, len(messages),
                         exc_info=exc.__cause__ or exc)
            self._take_back(chosen[sent:])
            if sent:
                self._sent(chosen[:sent], utcnow())
            return
        self._sent(chosen, utcnow())

    def _plan_queue(self, candidate: Candidate) -> str | None:
        return queue_for(candidate.tenant_id, plan_for(self.settings, self.plans.get(candidate.tenant_id, "default")))

    def _send(self, batches: list[list]) -> list[None]:
        """The publishing thread: every batch waiting, in one transaction."""
        self.publisher.publish([message for batch in batches for message in batch])
        return [None] * len(batches)

    def _settle(self) -> None:
        """Batches the publishing thread is done with, in order: marked, or taken back if they failed."""
        while self._sending and self._sending[0][0].done.is_set():
            ticket, chosen, published_at = self._sending.pop(0)
            if ticket.error is not None:
                logger.error("publishing %d jobs failed (%r); they stay queued", len(chosen), ticket.error)
                self._take_back(chosen)
            else:
                self._sent(chosen, published_at)

    def _take_back(self, chosen: list[Candidate]) -> None:
        for candidate in reversed(chosen):
            self.in_flight.pop(candidate.job_id, None)
            self.unclaimed.discard(candidate.job_id)
            self.queue.unselect(candidate)

    def _sent(self, chosen: list[Candidate], published_at: datetime) -> None:
        """The broker has the jobs: mark them (see :data:`MARK_LINGER`)."""
        self._marker.post(([c.job_id for c in chosen], published_at))
        for candidate in chosen:
            logger.info("job %s dispatched", candidate.job_id, extra={
                "job_id": candidate.job_id, "tenant_id": candidate.tenant_id, "kind": candidate.kind,
                "state": "dispatched"})
        self.dispatched += len(chosen)

    # -- bookkeeping -------------------------------------------------------------------------

    def _mark(self, batches: list[tuple[list[int], datetime]]) -> list[None]:
        self.store.mark_dispatched([job_id for ids, _ in batches for job_id in ids],
                                   published_at=[at for ids, at in batches for _ in ids], on=self._marks_on)
        return [None] * len(batches)

    def _refill(self, tenant_id: str, n: int) -> list[Candidate]:
        """The tenant's next queued jobs, but none in flight or chosen earlier in this round (the
        fair queue itself skips those of the ask it is answering)."""
        exclude = [job_id for job_id, f in self.in_flight.items() if f.tenant_id == tenant_id]
        exclude += [c.job_id for c in self._choosing if c.tenant_id == tenant_id]
        heads = self.store.heads(tenant_id, n, exclude=exclude)
        return [self._candidate(head) for head in heads]

    def _candidate(self, head: Head) -> Candidate:
        if head.queue:
            self._queues[head.job_id] = head.queue
        return Candidate(
            job_id=head.job_id, tenant_id=head.tenant_id, kind=head.kind, priority=head.priority,
            seq=head.job_id, enqueued_at=head.enqueued_at.timestamp(),
            cost=head.cost_estimate or self.estimates.get(head.kind, 0.05),
        )

    def _ended(self, job_id: int, seconds: float) -> None:
        """A job left flight after running ``seconds`` (0: it never ran): charge its tenant that."""
        self.unclaimed.discard(job_id)
        flight = self.in_flight.pop(job_id, None)
        if flight is None:
            return  # not this leader's (or already swept)
        actual = max(0.0, seconds)
        self.queue.complete(flight.tenant_id, estimated=flight.estimate, actual=actual)
        if actual > 0:
            self.share.add(flight.tenant_id, actual)
            previous = self.estimates.get(flight.kind, actual)
            self.estimates[flight.kind] = (1 - EWMA) * previous + EWMA * actual

    def _sweep(self) -> None:
        """Jobs that left flight without a word (cancelled while waiting, skipped as duplicates, a lost
        notification): their rows say so. Only jobs dispatched a while ago are looked at, so a job
        not yet marked ``dispatched`` is never mistaken for one that ended."""
        self._swept_at = time.monotonic()
        settled = time.monotonic() - SWEEP
        old = [job_id for job_id, flight in self.in_flight.items() if flight.since < settled]
        finished, claimed = self.store.settled(old)
        for done in finished:
            self._ended(done.job_id, done.run_seconds)
        self.unclaimed -= claimed  # claims whose news was lost (a notification missed while reconnecting, say)

    def _publish_shares(self) -> None:
        """Each tenant's share of worker time in the window beside its entitlement (metrics)."""
        self._shared_at = time.monotonic()
        snapshot = self.queue.snapshot()
        busy = {t for t, s in snapshot.items() if s["in_flight"] or (not s["paused"] and (s["buffered"] or s["has_more"]))}
        metrics.publish_shares(shares(self.share.seconds(), {t: s["weight"] for t, s in snapshot.items()}, busy))

    def _refresh_tenants(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._tenants_at < TENANT_REFRESH:
            return
        self._tenants_at = time.monotonic()
        for tenant_id, (weight, plan, paused) in self.store.tenants().items():
            cap = plan_for(self.settings, plan).concurrency
            self.queue.set_tenant(tenant_id, weight=weight, paused=paused, cap=cap)
            self.plans[tenant_id] = plan

    def _notify_due(self) -> None:
        """Tenants whose waiting jobs (retry backoffs, deferrals) have come due."""
        now = utcnow()
        for tenant_id in self.store.due_since(self._last_due_check, now):
            self.queue.notify(tenant_id)
        self._last_due_check = now

    def _lost(self, *, orphaned: tuple[str, ...] = ()) -> list[int]:
        """Put back the jobs in flight past their lease (see ``Store.lost``): a durable broker
        (RabbitMQ) may hold a claimed job's message until its consumer ack timeout."""
        durable = getattr(self.publisher, "durable", True)
        return self.store.lost(
            lease_seconds=self.settings.job_lease_seconds,
            time_limits={name: k.time_limit for name, k in kinds().items()},
            ack_timeout=self.settings.broker_ack_timeout_seconds if durable else None,
            orphaned=orphaned,
        )

    def _housekeeping(self) -> None:
        self._housekeeping_at = time.monotonic()
        self._lost()
        for tenant_id in self.store.backlog():  # a safety net for lost news: no buffer is dropped
            self.queue.remind(tenant_id)


class DispatcherMiddleware(Middleware):
    """Runs a dispatcher thread in each worker process, and asks the ``dramatiq`` command for a
    companion process (see the module docstring)."""

    def __init__(self) -> None:
        self.dispatcher: Dispatcher | None = None

    @property
    def forks(self):
        """The dispatcher companion, forked once per ``dramatiq`` command (PostgreSQL only)."""
        from app.scheduling.companion import companion_wanted, run_companion

        return [run_companion] if companion_wanted(get_settings()) else []

    def after_worker_boot(self, broker, worker) -> None:
        """Called once a worker has started: starts this process's dispatcher."""
        from app.scheduling.companion import companion_wanted

        settings = get_settings()
        self.dispatcher = Dispatcher(broker, settings, defer_to_companion=companion_wanted(settings))
        self.dispatcher.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        """Called when a worker stops: stops dispatching first, so nothing new arrives."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher = None
