"""Who is calling: the identity in the request's token, and the session scoped to its tenant."""
from __future__ import annotations

from dataclasses import dataclass

from flask import g
from flask_jwt_extended import get_jwt, verify_jwt_in_request
from sqlalchemy.orm import Session

from app import logs
from app.db import get_db
from app.errors import ServiceError
from app.tenancy.scoping import scope_session

__all__ = ["Identity", "current_identity", "optional_identity", "request_session", "close_request_session"]


@dataclass(frozen=True)
class Identity:
    """The caller, from the claims of a verified token."""

    user_id: int
    tenant_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def claims(self) -> dict[str, object]:
        return {"tenant": self.tenant_id, "role": self.role}


def _from_claims() -> Identity:
    claims = get_jwt()
    identity = Identity(user_id=int(claims["sub"]), tenant_id=claims["tenant"], role=claims["role"])
    logs.bind(tenant_id=identity.tenant_id, user_id=identity.user_id)
    return identity


def current_identity() -> Identity:
    """The caller of a view decorated with ``jwt_required()``."""
    if "identity" not in g:
        g.identity = _from_claims()
    return g.identity


def optional_identity() -> Identity | None:
    """The caller if the request carries a valid access token, else ``None``.

    A token that is present but invalid (expired, revoked, tampered) is still an error.
    """
    if verify_jwt_in_request(optional=True) is None:
        return None
    return current_identity()


def request_session() -> Session:
    """The request's database session, scoped to the caller's tenant; closed at teardown.

    Raises:
      ServiceError: the view was reached without a verified token.
    """
    if "db_session" not in g:
        identity = current_identity() if get_jwt() else None
        if identity is None:
            raise ServiceError("authentication required", slug="unauthorized", status=401)
        g.db_session = scope_session(get_db().sessionmaker(), identity.tenant_id)
    return g.db_session


def close_request_session(exc: BaseException | None = None) -> None:
    """Teardown: roll back what the request did not commit and close its session."""
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
