"""Where workers start: ``dramatiq app.tasks`` and ``periodiq app.tasks``.

The broker module comes first, so the broker is set before any actor is
declared; then every module that declares actors. Importing this module needs
no Flask app and no request.
"""
from app.broker import broker  # noqa: I001  (must stay first)

import app.ingest.job  # noqa: F401
import app.reconcile.job  # noqa: F401
import app.scheduling.builtin  # noqa: F401
import app.scheduling.housekeeping  # noqa: F401

__all__ = ["broker"]
