"""JWT access and refresh tokens (flask-jwt-extended), and the revocation list.

Tokens carry the user id (``sub``), the tenant and the role. The algorithm is
pinned (``FAIRQ_JWT_ALGORITHM``); ``alg: none`` and any other algorithm are
refused. Revoked tokens are kept in the ``revoked_tokens`` table — the record
that survives a Redis restart or flush — and, on the real path, cached in
Redis so a request costs one Redis round trip, not a database query.
"""
from __future__ import annotations

import logging
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_jwt_extended import JWTManager
from flask_jwt_extended.exceptions import WrongTokenError
from sqlalchemy.exc import IntegrityError

from app.api.problems import problem_response
from app.db import get_db, utcnow
from app.settings import Settings, SettingsError
from app.tenancy.models import RevokedToken, User
from app.tenancy.scoping import tenant_session

__all__ = ["init_app", "jwt_secret", "RevocationList", "purge_expired_revocations", "MIN_SECRET_BYTES"]

logger = logging.getLogger(__name__)

#: The shortest signing key accepted.
MIN_SECRET_BYTES = 32
#: Secrets that appear in tutorials and default configs; never accepted.
KNOWN_SECRETS = frozenset({
    "secret", "secret-key", "secretkey", "jwt-secret", "jwt_secret", "changeme", "change-me",
    "change_me", "changeit", "super-secret", "supersecret", "super-secret-key", "your-secret-key",
    "your-256-bit-secret", "dev", "development", "test", "testing", "fairq",
    "change-me-to-a-long-random-secret-value", "please-change-this-secret-key-in-production",
})
#: The Redis keys of the revocation cache.
REDIS_PREFIX = "fairq:revoked:"
REDIS_LOADED = "fairq:revoked:_loaded"

jwt = JWTManager()


def jwt_secret(settings: Settings) -> str:
    """The signing key: ``FAIRQ_JWT_SECRET``, or on the embedded default one kept in the data dir.

    Raises:
      SettingsError: no secret on the real path, or a known or short one.
    """
    if settings.jwt_secret is not None:
        value = settings.jwt_secret.get_secret_value()
        if value.strip().lower() in KNOWN_SECRETS or len(set(value)) < 8:
            raise SettingsError("FAIRQ_JWT_SECRET is a well-known or trivial value: use a random one")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(f"FAIRQ_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return value
    if not settings.all_embedded:
        raise SettingsError(
            "FAIRQ_JWT_SECRET must be set when fairq runs on real servers "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return _embedded_secret(settings.data_dir / "jwt-secret")


def _embedded_secret(path: Path) -> str:
    """A random key kept in ``path`` (mode 0600), so tokens survive a restart of ``fairq up``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


class RevocationList:
    """Revoked token ids: the database is the record, Redis (when configured) the cache."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = None
        if settings.redis_url:
            import redis

            self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)

    def revoke(self, *, jti: str, tenant_id: str, user_id: int | None, expires_at: datetime) -> None:
        """Revoke a token until it expires. Safe to call twice."""
        try:
            with get_db(self.settings).session() as session:
                session.add(RevokedToken(jti=jti, tenant_id=tenant_id, user_id=user_id, expires_at=expires_at))
        except IntegrityError:
            pass  # already revoked
        self._cache(jti, expires_at)

    def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` was revoked; falls back to the database if Redis is down or was flushed."""
        if self.redis is not None:
            import redis

            try:
                loaded, cached = self.redis.pipeline().exists(REDIS_LOADED).exists(REDIS_PREFIX + jti).execute()
                if loaded:
                    return bool(cached)
                self._reload()
            except redis.RedisError:
                logger.warning("revocation cache unavailable; asking the database")
        with get_db(self.settings).session() as session:
            return session.get(RevokedToken, jti) is not None

    def _cache(self, jti: str, expires_at: datetime) -> None:
        if self.redis is None:
            return
        import redis

        ttl = max(1, int((expires_at - utcnow()).total_seconds()))
        try:
            self.redis.set(REDIS_PREFIX + jti, 1, ex=ttl)
        except redis.RedisError:
            logger.warning("revocation cache unavailable; the database keeps the revocation")

    def _reload(self) -> None:
        """Copy every unexpired revocation from the database into Redis (after a flush or restart)."""
        now = utcnow()
        with get_db(self.settings).session() as session:
            rows = session.execute(
                sa.select(RevokedToken.jti, RevokedToken.expires_at).where(RevokedToken.expires_at > now)
            ).all()
        pipe = self.redis.pipeline()
        for jti, expires_at in rows:
            pipe.set(REDIS_PREFIX + jti, 1, ex=max(1, int((expires_at - now).total_seconds())))
        pipe.set(REDIS_LOADED, 1)
        pipe.execute()
        logger.info("revocation cache rebuilt from the database: %d tokens", len(rows))


def purge_expired_revocations(settings: Settings | None = None) -> int:
    """Forget revocations of tokens that have expired anyway. Returns how many."""
    with get_db(settings).session() as session:
        result = session.execute(sa.delete(RevokedToken).where(RevokedToken.expires_at <= utcnow()))
    return result.rowcount or 0


def _problem(slug: str, detail: str):
    return problem_response(401, slug=slug, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def init_app(app: Flask, settings: Settings) -> None:
    """Configure JWTs on ``app``: the key, the pinned algorithm, lifetimes and 401 problems."""
    app.config.update(
        JWT_SECRET_KEY=jwt_secret(settings),
        JWT_ALGORITHM=settings.jwt_algorithm,
        JWT_DECODE_ALGORITHMS=[settings.jwt_algorithm],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.access_token_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=settings.refresh_token_days),
        JWT_TOKEN_LOCATION=["headers"],
    )
    revocations = RevocationList(settings)
    app.extensions["fairq.revocations"] = revocations
    jwt.init_app(app)

    @jwt.token_in_blocklist_loader
    def _revoked(_header, payload) -> bool:
        return revocations.is_revoked(payload["jti"])

    @jwt.user_lookup_loader
    def _active_user(_header, payload) -> User | None:
        with tenant_session(payload["tenant"]) as session:
            user = session.get(User, int(payload["sub"]))
            return user if user is not None and not user.disabled else None

    jwt.expired_token_loader(lambda _h, _p: _problem("token-expired", "The token has expired."))
    jwt.revoked_token_loader(lambda _h, _p: _problem("token-revoked", "The token has been revoked."))
    jwt.invalid_token_loader(lambda reason: _problem("invalid-token", f"The token is not valid: {reason}."))
    jwt.unauthorized_loader(lambda reason: _problem("unauthorized", f"Authentication required: {reason}."))
    jwt.user_lookup_error_loader(lambda _h, _p: _problem("invalid-token", "The token's user is disabled or gone."))
    app.register_error_handler(
        WrongTokenError, lambda exc: _problem("wrong-token-type", f"Wrong kind of token: {exc}.")
    )


def expires_at(payload: dict) -> datetime:
    """When the token of ``payload`` expires."""
    return datetime.fromtimestamp(payload["exp"], UTC)
