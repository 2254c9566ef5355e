"""The tables of tenancy: tenants, users and revoked tokens."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["Tenant", "User", "RevokedToken", "ROLES", "TENANT_ROLES", "PLATFORM_TENANT", "TENANT_ID_PATTERN"]

#: What a tenant id looks like: a slug.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"
#: The reserved tenant that holds the platform's operators (never a valid slug, so never a customer).
PLATFORM_TENANT = "_platform"
#: Roles a user of a tenant may have.
TENANT_ROLES = ("admin", "member")
#: Every role; ``operator`` exists only in the platform tenant and is created through the CLI.
ROLES = (*TENANT_ROLES, "operator")


class Tenant(Base):
    """A customer of the platform: its share of the workers, its plan, whether it is paused."""

    __tablename__ = "tenants"
    __table_args__ = (sa.CheckConstraint("weight > 0", name="weight_positive"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    weight: Mapped[int] = mapped_column(sa.Integer, default=1, server_default="1")
    plan: Mapped[str] = mapped_column(sa.String(64), default="default", server_default="default")
    paused: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(TenantScoped, Base):
    """A person who logs in to one tenant (the seed's ``users``, with a role)."""

    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "email"),
        sa.CheckConstraint("role IN ('admin', 'member', 'operator')", name="role"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("tenants.id"))
    email: Mapped[str] = mapped_column(sa.String(320))
    password_hash: Mapped[str] = mapped_column(sa.String(100))
    role: Mapped[str] = mapped_column(sa.String(16), default="member", server_default="member")
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RevokedToken(Base):
    """A token revoked before it expired (logout). Kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    user_id: Mapped[int | None] = mapped_column(BigID)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
