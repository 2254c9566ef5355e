"""Where workers start: ``dramatiq app.tasks`` and ``periodiq app.tasks``.

The broker module comes first, so the broker is set before any actor is
declared; then every module that declares actors. Importing this module needs
no Flask app and no request.
"""
from app.broker import broker  # noqa: I001  (must stay first)

import app.campaigns.schedule  # noqa: F401
import app.ingest.job  # noqa: F401
import app.quota.rollups  # noqa: F401
import app.reconcile.job  # noqa: F401
import app.scheduling.builtin  # noqa: F401
import app.scheduling.housekeeping  # noqa: F401
from app.logs import adopt_cli_logging
from app.settings import get_settings
from app.scheduling.kinds import declare_plugin_kinds

declare_plugin_kinds()  # the kinds plugins run (campaign execution, ...)

__all__ = ["broker"]

# ``dramatiq`` and ``periodiq`` set up text logging before they import this module: make it JSON.
adopt_cli_logging(get_settings().log_level)
