"""Failed-login limits per (tenant, email) and per client address.

Counted with the ``limits`` library (the one under Flask-Limiter): in Redis on
the real path, in memory on the embedded default. Only failures count; a
successful login clears its account's count. If Redis cannot be reached the
limits are not enforced (logged): bcrypt's cost still bounds guessing, and
nobody is locked out by an outage.
"""
from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.errors import ServiceError
from app.settings import Settings

__all__ = ["LoginLimits", "TooManyFailures"]

logger = logging.getLogger(__name__)


class TooManyFailures(ServiceError):
    status = 429
    slug = "too-many-login-failures"


class LoginLimits:
    """Counts failed logins and refuses further attempts over the limit."""

    def __init__(self, settings: Settings) -> None:
        uri = settings.redis_url or "memory://"
        options = {"socket_timeout": 1, "socket_connect_timeout": 1} if settings.redis_url else {}
        self.storage = storage_from_string(uri, key_prefix="fairq:login", **options)
        self.limiter = FixedWindowRateLimiter(self.storage)
        window = settings.login_failure_window_seconds
        self.per_account = RateLimitItemPerSecond(settings.login_max_failures, window)
        self.per_address = RateLimitItemPerSecond(settings.login_max_failures_per_address, window)

    def check(self, *, tenant_id: str, email: str, address: str) -> None:
        """Raises: TooManyFailures: over either limit (with ``Retry-After``)."""
        for item, keys, what in self._items(tenant_id, email, address):
            try:
                allowed = self.limiter.test(item, *keys)
                reset = self.limiter.get_window_stats(item, *keys).reset_time if not allowed else 0
            except Exception:  # the limits library raises the storage's own errors
                logger.warning("login limits unavailable; not enforced for this attempt")
                return
            if not allowed:
                retry = max(1, math.ceil(reset - time.time()))
                raise TooManyFailures(
                    f"too many failed logins {what}; try again in {retry} s",
                    headers={"Retry-After": str(retry)},
                )

    def failed(self, *, tenant_id: str, email: str, address: str) -> None:
        """Count one failed attempt against the account and the address."""
        try:
            for item, keys, _ in self._items(tenant_id, email, address):
                self.limiter.hit(item, *keys)
        except Exception:
            logger.warning("login limits unavailable; failure not counted")

    def succeeded(self, *, tenant_id: str, email: str) -> None:
        """A successful login clears its account's failures."""
        try:
            self.limiter.clear(self.per_account, "account", tenant_id, email)
        except Exception:
            logger.warning("login limits unavailable; failures not cleared")

    def _items(self, tenant_id: str, email: str, address: str):
        return (
            (self.per_account, ("account", tenant_id, email), "for this account"),
            (self.per_address, ("address", address), "from this address"),
        )
