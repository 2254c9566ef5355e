"""``fairq up``: the API, Dramatiq workers and the periodic scheduler in one process.

The backends are whatever the settings say: the embedded default with no
variable set, the real servers otherwise. Ctrl-C or SIGTERM stops it in order:
the HTTP server stops accepting requests, the scheduler stops ticking, and
the workers finish the jobs they are running (on RabbitMQ, messages they had
fetched but not started go back to the queue).
"""
from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Callable

import dramatiq
from werkzeug.serving import make_server

from app import migrate
from app.settings import Settings
from app.storage import make_store

__all__ = ["serve"]

logger = logging.getLogger(__name__)

#: How long (ms) workers get to finish running jobs at shutdown.
SHUTDOWN_TIMEOUT_MS = 600_000


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    migrate_db: bool = True,
    announce: Callable[[str], None] = print,
    on_ready: Callable[[str, threading.Event], None] | None = None,
) -> None:
    """Run everything until SIGINT or SIGTERM.

    Parameters:
      on_ready: called once the API answers, with its base URL and an event set when
        fairq starts stopping (``fairq up --demo`` starts its seeding thread there).

    Raises:
      OSError: the address is taken.
    """
    from app import create_app
    from app.metrics.exposition import serve_in_process
    from app.scheduling.periodic import SchedulerThread, periodic_actors
    from app.tasks import broker

    if migrate_db:
        migrate.prepare(settings)
    make_store(settings).ensure()
    app = create_app(settings)
    try:
        server = make_server(host, port, app, threaded=True)
    except SystemExit:  # werkzeug reports a taken port itself, then exits
        raise OSError(errno.EADDRINUSE, "address already in use") from None

    stop = threading.Event()

    def _request_stop(signum, _frame) -> None:
        logger.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    serve_in_process()  # one process: /metrics on the API's port is the one endpoint
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads)
    worker.start()
    scheduler = SchedulerThread(periodic_actors(broker))
    scheduler.start()
    http = threading.Thread(target=server.serve_forever, name="fairq-http", daemon=True)
    http.start()

    backends = ", ".join(
        f"{name}: {'embedded' if embedded else 'real'}" for name, embedded in settings.embedded.items()
    )
    announce(f"fairq is up on http://{host}:{server.port}  ({backends}; Ctrl-C to stop)")
    if on_ready is not None:
        on_ready(f"http://{_reachable(host)}:{server.port}", stop)
    try:
        stop.wait()
    finally:
        announce("fairq is stopping: finishing running jobs ...")
        server.shutdown()
        http.join()
        scheduler.stop()
        scheduler.join()
        worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
        broker.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        announce("fairq stopped.")


def _reachable(host: str) -> str:
    """An address a browser on this machine reaches ``host`` at (not the wildcard)."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
