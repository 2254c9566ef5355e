"""Bind each worker process of a ``dramatiq`` command to a CPU of its own (``FAIRQ_WORKER_CPU_AFFINITY``).

A worker process runs its threads (consumer, workers, the gate's group commits)
under one interpreter lock, so it uses about one core however many it may use.
Left to the kernel, those threads are spread over every core, and each hand-over
of the lock wakes a thread on another core, which waits there for its turn. With
``spread``, worker process ``i`` of the command (Dramatiq starts them in order)
is bound to the ``i``-th CPU it may use, wrapping around; the dispatcher
companion, PostgreSQL and RabbitMQ stay free to use every CPU.

Measured on 2 cores, one worker process of 8 threads, 2 ms jobs (BENCHMARKS.md,
session 9): fairq 710-922 jobs/s unbound, 899-1,060 bound; plain Dramatiq
1,351-1,680 unbound, 1,945-2,154 bound. Off by default: a bound process cannot
move away from a core that other work has taken.
"""
from __future__ import annotations

import logging
import multiprocessing
import os

from dramatiq import Middleware

__all__ = ["CpuAffinity", "cpu_for", "worker_index"]

logger = logging.getLogger(__name__)


def cpu_for(index: int, allowed: set[int]) -> int:
    """The CPU of worker process ``index``: the ``index``-th of ``allowed`` in order, wrapping around."""
    cpus = sorted(allowed)
    return cpus[index % len(cpus)]


def worker_index() -> int | None:
    """This worker process's number within its ``dramatiq`` command (0 for the first), or None in a
    process that command did not start as a worker (``fairq up``, a test).

    Dramatiq starts its worker processes first, in order, with :mod:`multiprocessing`, whose
    processes are numbered as they are created (its forks come after: they never call this).
    """
    identity = getattr(multiprocessing.current_process(), "_identity", ())
    return identity[0] - 1 if len(identity) == 1 else None


class CpuAffinity(Middleware):
    """Binds the worker process to its CPU as the worker boots (``spread``); does nothing with ``off``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def before_worker_boot(self, broker, worker) -> None:
        index = worker_index()
        if self.mode != "spread" or index is None:
            return
        cpu = cpu_for(index, os.sched_getaffinity(0))
        # every thread the process has so far (threads started later inherit it from theirs)
        for task in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(task), {cpu})
            except ProcessLookupError:  # a thread that ended meanwhile
                continue
        logger.info("worker process %d (pid %d) bound to CPU %d", index, os.getpid(), cpu)
