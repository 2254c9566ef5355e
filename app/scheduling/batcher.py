"""Group commit: many threads' small writes in one transaction, each thread waiting for its own.

Worker threads call :meth:`GroupCommit.submit` and block until the batch that
holds their item is committed (or :meth:`GroupCommit.request` now and
:meth:`Ticket.wait` later); one flusher thread takes whatever has gathered
(up to ``max_batch``) and runs it as a single transaction. A thread therefore
only goes on once its write is durable, yet eight threads finishing at once
cost one commit, not eight. :meth:`GroupCommit.post` queues an item without
waiting (blocking only while ``max_pending`` items wait already), and
:meth:`GroupCommit.drain` waits until everything posted has been written.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit", "Ticket"]

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class Ticket(Generic[Item, Result]):
    """One queued item: :meth:`wait` returns its result once its batch is committed."""

    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Item, *, waited: bool = True) -> None:
        self.item = item
        #: ``None`` for a posted item: nobody waits for it, so it needs no event (one less
        #: lock and condition to make and set for every outcome)
        self.done = threading.Event() if waited else None
        self.result: Result | None = None
        self.error: BaseException | None = None

    def wait(self, timeout: float = 60.0) -> Result:
        """The item's result.

        Raises:
          the flush's exception, or TimeoutError.
        """
        if not self.done.wait(timeout):
            raise TimeoutError("the group commit did not complete in time")
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[Item, Result]):
    """Runs ``flush(items) -> results`` (one result per item, in order) for batches of submitted items.

    Parameters:
      flush: writes a batch in one transaction; an exception fails every item of that batch.
      name: the flusher thread's name.
      max_batch: the most items one flush takes.
      max_pending: the most items waiting for a flush; :meth:`post` blocks while there are more.
      linger: seconds the flusher lets items gather after the first one arrives (0: none), for
        writes that gain from waiting (see the dispatcher's marks); :meth:`drain` does not wait for it.
    """

    def __init__(self, flush: Callable[[Sequence[Item]], Sequence[Result]], *, name: str, max_batch: int = 64,
                 max_pending: int = 1024, linger: float = 0.0) -> None:
        self._flush = flush
        self._linger = linger
        self._draining = False
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._flushing = False
        self._pending: list[Ticket[Item, Result]] = []
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item, *, timeout: float = 60.0) -> Result:
        """Queue ``item`` and wait until its batch is committed; returns its result.

        Raises:
          the flush's exception, or TimeoutError.
        """
        return self.request(item).wait(timeout)

    def request(self, item: Item) -> Ticket[Item, Result]:
        """Queue ``item`` without waiting; its ticket gives the result later."""
        ticket: Ticket[Item, Result] = Ticket(item)
        with self._condition:
            self._pending.append(ticket)
            self._condition.notify_all()  # the flusher, whoever else waits (posters, drain) too
        return ticket

    def post(self, item: Item) -> None:
        """Queue ``item`` without waiting for its commit (failures are logged); waits only while
        ``max_pending`` items are queued already (the database is slower than the workers)."""
        with self._condition:
            while len(self._pending) >= self._max_pending:
                self._condition.wait()
            self._pending.append(Ticket(item, waited=False))
            self._condition.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until every item queued so far is written (or failed); False if ``timeout`` passed first."""
        with self._condition:
            self._draining = True
            self._condition.notify_all()
            try:
                return self._condition.wait_for(lambda: not self._pending and not self._flushing, timeout)
            finally:
                self._draining = False

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending:
                    self._condition.wait()
                if self._linger and not self._draining:
                    self._condition.wait_for(lambda: self._draining or len(self._pending) >= self._max_batch,
                                             self._linger)
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
                self._flushing = True
                self._condition.notify_all()  # room for posters that wait
            try:
                results = self._flush([p.item for p in batch])
                for pending, result in zip(batch, results, strict=True):
                    pending.result = result
            except BaseException as exc:  # every waiter of the batch gets the failure
                logger.warning("group commit of %d items failed: %r", len(batch), exc)
                for pending in batch:
                    pending.error = exc
            for pending in batch:
                if pending.done is not None:
                    pending.done.set()
            with self._condition:
                self._flushing = False
                self._condition.notify_all()  # for drain()
