"""Tenant scoping of every query, in one place.

Every tenant-owned model inherits :class:`TenantScoped`. A session is opened
for one tenant (:func:`tenant_session`) or, for operators and system work,
explicitly for all tenants (:func:`system_session`). Then:

- every ORM ``SELECT`` / ``UPDATE`` / ``DELETE`` touching a tenant-owned model
  gets ``tenant_id = <the session's tenant>`` added by SQLAlchemy
  (``with_loader_criteria``), so a query written without the filter still
  returns only that tenant's rows;
- such a query in a session with no tenant at all raises
  :class:`TenantScopeError` instead of reading everyone's rows;
- new rows get the session's tenant, and a row of another tenant cannot be
  added;
- on PostgreSQL each transaction also sets ``fairq.tenant_id`` (or
  ``fairq.all_tenants``), which the row-level security policies of the
  tenant-owned tables check: a query issued with no tenant set sees no rows.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, with_loader_criteria

from app.db import Database, get_db

__all__ = [
    "TenantScoped",
    "TenantScopeError",
    "tenant_session",
    "system_session",
    "scope_session",
    "session_tenant",
]

#: The session.info keys that carry the scope.
TENANT_KEY = "fairq.tenant_id"
ALL_TENANTS_KEY = "fairq.all_tenants"


class TenantScoped:
    """Mixin for models whose rows belong to one tenant: the ``tenant_id`` column.

    A model may redeclare the column (to add a foreign key or an index).
    """

    tenant_id: Mapped[str] = mapped_column(sa.String(64))


class TenantScopeError(RuntimeError):
    """Tenant-owned data was touched in a session with no tenant."""


def scope_session(session: Session, tenant_id: str | None = None, *, all_tenants: bool = False) -> Session:
    """Give ``session`` its scope; call before its first query."""
    if (tenant_id is None) == (not all_tenants):
        raise ValueError("a session is scoped to exactly one tenant, or explicitly to all tenants")
    session.info[TENANT_KEY] = tenant_id
    session.info[ALL_TENANTS_KEY] = all_tenants
    return session


def session_tenant(session: Session) -> str | None:
    """The tenant a session is scoped to (``None`` for a system session)."""
    return session.info.get(TENANT_KEY)


@contextmanager
def tenant_session(tenant_id: str, *, db: Database | None = None) -> Iterator[Session]:
    """A session that sees and writes only ``tenant_id``'s rows; commits at the end of the block."""
    with (db or get_db()).session() as session:
        yield scope_session(session, tenant_id)


@contextmanager
def system_session(*, db: Database | None = None) -> Iterator[Session]:
    """A session for operators and system jobs that deliberately spans all tenants."""
    with (db or get_db()).session() as session:
        yield scope_session(session, all_tenants=True)


def _touches_tenant_data(state: ORMExecuteState) -> bool:
    return any(issubclass(mapper.class_, TenantScoped) for mapper in state.all_mappers)


@event.listens_for(Session, "do_orm_execute")
def _add_tenant_criteria(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return  # the parent query was already scoped
    if state.session.info.get(ALL_TENANTS_KEY):
        return
    tenant_id = state.session.info.get(TENANT_KEY)
    if tenant_id is None:
        if _touches_tenant_data(state):
            raise TenantScopeError("tenant-owned data queried in a session with no tenant")
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantScoped, lambda cls: cls.tenant_id == tenant_id, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _check_new_rows(session: Session, _context, _instances) -> None:
    if session.info.get(ALL_TENANTS_KEY):
        return
    tenant_id = session.info.get(TENANT_KEY)
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, TenantScoped):
            continue
        if tenant_id is None:
            raise TenantScopeError(f"{type(obj).__name__} written in a session with no tenant")
        if obj.tenant_id is None:
            obj.tenant_id = tenant_id
        elif obj.tenant_id != tenant_id:
            raise TenantScopeError(f"{type(obj).__name__} of another tenant written in a tenant session")


@event.listens_for(Session, "after_begin")
def _set_database_scope(session: Session, _transaction, connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    connection.execute(
        sa.text("SELECT set_config('fairq.tenant_id', :tenant, true), set_config('fairq.all_tenants', :all, true)"),
        {
            "tenant": session.info.get(TENANT_KEY) or "",
            "all": "on" if session.info.get(ALL_TENANTS_KEY) else "off",
        },
    )
