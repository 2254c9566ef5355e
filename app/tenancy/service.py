"""Tenancy services: sign-up, invitations, authentication, tenants and users.

The API, the CLI and the dashboard all call these functions; they own their
sessions and commits and report failures as :class:`~app.errors.ServiceError`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Forbidden, Invalid, NotFound, ServiceError
from app.quota.plans import plans
from app.settings import Settings, get_settings
from app.tenancy.identity import Identity
from app.tenancy.login_limits import LoginLimits
from app.tenancy.models import PLATFORM_TENANT, TENANT_ID_PATTERN, TENANT_ROLES, Tenant, User
from app.tenancy.passwords import burn_time, check_password, hash_password, normalise_email, verify_password
from app.tenancy.scoping import system_session, tenant_session

__all__ = [
    "register",
    "authenticate",
    "InvalidCredentials",
    "TenantMismatch",
    "create_tenant",
    "list_tenants",
    "get_tenant",
    "update_tenant",
    "TenantChanges",
    "create_user",
    "list_users",
    "get_user",
    "set_user_disabled",
    "create_operator",
    "set_password",
]

logger = logging.getLogger(__name__)

_TENANT_ID = re.compile(TENANT_ID_PATTERN)


class InvalidCredentials(ServiceError):
    status = 401
    slug = "invalid-credentials"


class TenantMismatch(Forbidden):
    slug = "tenant-mismatch"


def check_tenant_id(tenant_id: str) -> str:
    """Raises: Invalid: ``tenant_id`` is not a slug (names the field)."""
    if not _TENANT_ID.match(tenant_id or ""):
        raise Invalid(
            "tenant_id must be 2-64 characters of a-z, 0-9 and '-', starting with a letter or digit",
            errors=[{"field": "tenant_id", "message": f"must match {TENANT_ID_PATTERN}"}],
        )
    return tenant_id


def require_same_tenant(identity: Identity, tenant_id: str | None) -> None:
    """A ``tenant_id`` given in a request must be the caller's own.

    Raises:
      TenantMismatch: it is another tenant's.
    """
    if tenant_id is not None and tenant_id != identity.tenant_id:
        raise TenantMismatch("tenant_id does not match the tenant of your token")


def register(
    settings: Settings,
    *,
    tenant_id: str,
    email: str,
    password: str,
    role: str | None = None,
    inviter: Identity | None = None,
) -> User:
    """Sign up into a new tenant, or join an existing one on an admin's invitation.

    A tenant id that does not exist yet is created with this user as its admin
    (when ``FAIRQ_OPEN_SIGNUP`` allows). An existing tenant takes new users
    only from one of its admins (``inviter``): knowing its id is not enough.

    Raises:
      Invalid: a bad tenant id, email or password.
      TenantMismatch: the inviter's token belongs to another tenant.
      Forbidden: sign-up is closed, or the tenant exists and no admin of it invites.
      Conflict: the email is already registered in the tenant.
    """
    check_tenant_id(tenant_id)
    email = normalise_email(email)
    check_password(password, min_length=settings.password_min_length)
    if inviter is not None:
        require_same_tenant(inviter, tenant_id)
    if role is not None and role not in TENANT_ROLES:
        raise Invalid(f"role must be one of {', '.join(TENANT_ROLES)}")
    password_hash = hash_password(password, rounds=settings.bcrypt_rounds)

    with system_session() as session:
        exists = session.get(Tenant, tenant_id) is not None
    if exists:
        if inviter is None or not inviter.is_admin:
            raise Forbidden(
                "this tenant exists: an admin of it must invite you (register with their token)",
                slug="invite-required",
            )
        return _insert_user(tenant_id, email, password_hash, role or "member")
    if inviter is not None:  # an admin inviting into their own tenant, which must exist
        raise NotFound("no such tenant")
    if not settings.open_signup:
        raise Forbidden("self-service sign-up is off: ask an operator", slug="signup-closed")
    try:
        with system_session() as session:
            session.add(Tenant(id=tenant_id, name=tenant_id))
            session.flush()
            user = User(tenant_id=tenant_id, email=email, password_hash=password_hash, role="admin")
            session.add(user)
    except IntegrityError:  # someone created the tenant a moment ago
        raise Forbidden(
            "this tenant exists: an admin of it must invite you", slug="invite-required"
        ) from None
    logger.info("tenant %s created by sign-up", tenant_id)
    return user


def _insert_user(tenant_id: str, email: str, password_hash: str, role: str) -> User:
    try:
        with tenant_session(tenant_id) as session:
            user = User(tenant_id=tenant_id, email=email, password_hash=password_hash, role=role)
            session.add(user)
    except IntegrityError:
        raise Conflict(f"{email} is already registered in this tenant", slug="email-taken") from None
    return user


def authenticate(settings: Settings, *, tenant_id: str, email: str, password: str) -> User:
    """The active user with these credentials.

    Raises:
      InvalidCredentials: unknown tenant or email, wrong password, or a disabled user
        (one answer for all, in the same time).
    """
    email = normalise_email(email)
    user = None
    if _TENANT_ID.match(tenant_id or "") or tenant_id == PLATFORM_TENANT:
        with tenant_session(tenant_id) as session:
            user = session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        burn_time(password, rounds=settings.bcrypt_rounds)
    elif verify_password(password, user.password_hash) and not user.disabled:
        return user
    raise InvalidCredentials("tenant, email or password is wrong")


def log_in(settings: Settings, limits: LoginLimits, *, tenant_id: str, email: str, password: str,
           address: str) -> Identity:
    """Check credentials under the failed-login limits (the API's ``/login`` and the web's).

    Raises:
      TooManyFailures: too many failed logins for the account or the address (429).
      InvalidCredentials: see :func:`authenticate` (the failure is counted).
    """
    email = normalise_email(email)
    limits.check(tenant_id=tenant_id, email=email, address=address)
    try:
        user = authenticate(settings, tenant_id=tenant_id, email=email, password=password)
    except InvalidCredentials:
        limits.failed(tenant_id=tenant_id, email=email, address=address)
        raise
    limits.succeeded(tenant_id=tenant_id, email=email)
    return Identity(user_id=user.id, tenant_id=user.tenant_id, role=user.role)


# -- tenants (operators and the CLI) -------------------------------------------------------


@dataclass(frozen=True)
class TenantChanges:
    """What ``update_tenant`` may change; ``None`` leaves a field as it is."""

    name: str | None = None
    weight: int | None = None
    plan: str | None = None
    paused: bool | None = None


def create_tenant(tenant_id: str, *, name: str | None = None, weight: int = 1, plan: str = "default") -> Tenant:
    """Raises: Invalid (a bad id, weight or an unknown plan), Conflict."""
    check_tenant_id(tenant_id)
    _check_weight(weight)
    _check_plan(plan)
    try:
        with system_session() as session:
            tenant = Tenant(id=tenant_id, name=name or tenant_id, weight=weight, plan=plan)
            session.add(tenant)
    except IntegrityError:
        raise Conflict(f"tenant {tenant_id} already exists", slug="tenant-exists") from None
    return tenant


def list_tenants() -> list[Tenant]:
    """Every customer tenant (not the operators' own), by id."""
    with system_session() as session:
        return list(session.scalars(sa.select(Tenant).where(Tenant.id != PLATFORM_TENANT).order_by(Tenant.id)))


def get_tenant(tenant_id: str) -> Tenant:
    """Raises: NotFound."""
    with system_session() as session:
        tenant = session.get(Tenant, tenant_id)
    if tenant is None or tenant.id == PLATFORM_TENANT:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def update_tenant(tenant_id: str, changes: TenantChanges) -> Tenant:
    """Change a tenant's name, weight, plan or pause. Raises: NotFound, Invalid (an unknown plan too)."""
    if changes.weight is not None:
        _check_weight(changes.weight)
    if changes.plan is not None:
        _check_plan(changes.plan)
    with system_session() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None or tenant.id == PLATFORM_TENANT:
            raise NotFound(f"no tenant {tenant_id}")
        for field in ("name", "weight", "plan", "paused"):
            value = getattr(changes, field)
            if value is not None:
                setattr(tenant, field, value)
    logger.info("tenant %s updated: %s", tenant_id, changes)
    return tenant


def _check_weight(weight: int) -> None:
    if not 1 <= weight <= 1_000_000:
        raise Invalid("weight must be a whole number from 1 to 1000000",
                      errors=[{"field": "weight", "message": "1 to 1000000"}])


def _check_plan(plan: str) -> None:
    """A plan must exist (built in or in ``FAIRQ_PLANS``): a typo would otherwise put the tenant on
    ``default`` without a word (see :func:`app.quota.plans.plan_for`)."""
    known = plans(get_settings())
    if plan not in known:
        raise Invalid(f"unknown plan {plan!r}; the plans are {', '.join(sorted(known))}",
                      errors=[{"field": "plan", "message": "unknown plan"}])


# -- users ---------------------------------------------------------------------------------


def create_user(settings: Settings, *, tenant_id: str, email: str, password: str, role: str = "member") -> User:
    """Create a user in an existing tenant (the CLI's way). Raises: NotFound, Invalid, Conflict."""
    get_tenant(tenant_id)
    if role not in TENANT_ROLES:
        raise Invalid(f"role must be one of {', '.join(TENANT_ROLES)}")
    check_password(password, min_length=settings.password_min_length)
    return _insert_user(
        tenant_id, normalise_email(email), hash_password(password, rounds=settings.bcrypt_rounds), role
    )


def create_operator(settings: Settings, *, email: str, password: str) -> User:
    """Create a platform operator (only the CLI does). Raises: Invalid, Conflict."""
    check_password(password, min_length=settings.password_min_length)
    return _insert_user(
        PLATFORM_TENANT, normalise_email(email), hash_password(password, rounds=settings.bcrypt_rounds), "operator"
    )


def set_password(settings: Settings, *, tenant_id: str, email: str, password: str) -> User:
    """Give a user of a tenant (or an operator, in ``_platform``) a new password.

    Tokens issued before stay valid until they expire or are revoked.

    Raises:
      NotFound: no such user.
      Invalid: the password is too short.
    """
    check_password(password, min_length=settings.password_min_length)
    password_hash = hash_password(password, rounds=settings.bcrypt_rounds)
    with tenant_session(tenant_id) as session:
        user = session.scalar(sa.select(User).where(User.email == normalise_email(email)))
        if user is None:
            raise NotFound(f"no user {email} in tenant {tenant_id}")
        user.password_hash = password_hash
    return user


def list_users(tenant_id: str, *, after: int | None = None, limit: int = 50) -> list[User]:
    """A page of the tenant's users by id, starting after ``after``."""
    with tenant_session(tenant_id) as session:
        query = sa.select(User).order_by(User.id).limit(limit)
        if after is not None:
            query = query.where(User.id > after)
        return list(session.scalars(query))


def get_user(tenant_id: str, user_id: int) -> User:
    """Raises: NotFound (also for another tenant's user)."""
    with tenant_session(tenant_id) as session:
        user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def find_user(tenant_id: str, email: str) -> User:
    """Raises: NotFound."""
    with tenant_session(tenant_id) as session:
        user = session.scalar(sa.select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(f"no user {email} in tenant {tenant_id}")
    return user


def set_user_disabled(tenant_id: str, user_id: int, disabled: bool = True) -> User:
    """Disable (or re-enable) a user: their tokens stop working at once. Raises: NotFound."""
    with tenant_session(tenant_id) as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
        user.disabled = disabled
    return user
