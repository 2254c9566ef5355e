"""The dispatcher companion: the dispatcher in a process of its own, beside the worker processes.

A worker process has one interpreter lock for its consumer, its worker
threads, the gate's group commits — and, as a thread, the dispatcher, whose
rounds (the fair queue, the rate-limit tokens, the confirmed publish) then
delay every job's start and finish. ``dramatiq app.tasks`` therefore forks one
companion process per command (Dramatiq's ``forks``, as its Prometheus
middleware does for its exposition server) that runs only the dispatcher, on
the machine's other core. The fairq bench measured the gain: 2 ms jobs
through one worker process went from ~750 to ~900 jobs/s.

Nothing depends on the companion being there. It holds a shared advisory lock
while it is up; the worker processes' dispatcher threads stand by while any
companion holds it, and the one leading steps down when a companion comes up
(see :mod:`app.scheduling.leader`). Dramatiq does not restart a fork that
dies, so if the companion dies, its lock goes with its connection and a
worker's thread leads again within a couple of seconds.
"""
from __future__ import annotations

import logging
import os
import threading

from app.settings import Settings

__all__ = ["companion_wanted", "run_companion"]

logger = logging.getLogger(__name__)

#: Seconds between checks that the ``dramatiq`` command that forked the companion is still there.
PARENT_CHECK = 1.0
_stopping = threading.Event()


def companion_wanted(settings: Settings) -> bool:
    """Whether ``dramatiq app.tasks`` runs the dispatcher as a companion: on PostgreSQL (the
    embedded default's leadership and news live inside one process) with RabbitMQ (the in-process
    broker's messages reach only the worker of the process that sent them, and a companion has
    none: its jobs would never run)."""
    return (settings.dispatcher == "companion" and settings.sqlalchemy_url.startswith("postgresql")
            and bool(settings.broker_url))


def run_companion() -> int:
    """The companion process (forked by the ``dramatiq`` command): dispatches until stopped."""
    from app.logs import adopt_cli_logging
    from app.settings import get_settings

    settings = get_settings()
    adopt_cli_logging(settings.log_level)
    from app.metrics.instruments import enable_multiprocess, multiprocess_dir

    if settings.metrics_port:  # its gauges (tenants' shares) join the worker processes' folder
        enable_multiprocess(multiprocess_dir())
    from app.scheduling.dispatcher import Dispatcher
    from app.scheduling.leader import make_leadership
    from app.tasks import broker  # the broker and every job kind, as in a worker process

    dispatcher = Dispatcher(broker, settings, leadership=make_leadership(settings.sqlalchemy_url, companion=True))
    logger.info("dispatcher companion started (pid %d)", os.getpid())
    dispatcher.start()
    parent = os.getppid()
    try:
        # until the dramatiq command's SIGTERM ends this process, or the command is gone (SIGKILL)
        while not _stopping.wait(PARENT_CHECK):
            if os.getppid() != parent:
                logger.warning("the dramatiq command (pid %d) is gone: stopping the dispatcher companion", parent)
                break
    finally:
        dispatcher.stop()
        if settings.metrics_port:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), str(multiprocess_dir()))
        logger.info("dispatcher companion stopped")
    return 0
