"""Tenant isolation that cannot be forgotten: the ORM mechanism, and row-level security on PostgreSQL."""
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.campaigns.models import Campaign
from app.db import Database
from app.ingest.models import FintechTransaction
from app.tenancy.scoping import TenantScopeError, system_session, tenant_session


def seed(db=None):
    with system_session(db=db) as session:
        for tenant, count in (("acme", 3), ("globex", 2)):
            for i in range(count):
                session.add(FintechTransaction(tenant_id=tenant, txn_id=f"T{i}", amount=Decimal("10.00")))
            session.add(Campaign(tenant_id=tenant, name=f"{tenant} launch"))


@pytest.fixture(params=["postgresql", "sqlite"])
def any_db(request, db, tmp_path):
    """The same checks on PostgreSQL (the app's non-owner role) and on SQLite."""
    if request.param == "postgresql":
        return db
    from app import migrate

    lite = Database(f"sqlite:///{tmp_path / 'scoping.db'}")
    migrate.upgrade(lite)
    return lite


def test_a_query_written_without_a_filter_sees_only_its_tenant(any_db):
    seed(any_db)
    with tenant_session("acme", db=any_db) as session:
        # Given a query that forgets WHERE tenant_id = ...
        rows = session.scalars(sa.select(FintechTransaction)).all()
        count = session.scalar(sa.select(sa.func.count()).select_from(FintechTransaction))
        joined = session.execute(
            sa.select(FintechTransaction.txn_id, Campaign.name).join(
                Campaign, Campaign.tenant_id == FintechTransaction.tenant_id
            )
        ).all()
    # Then only acme's rows come back
    assert {r.tenant_id for r in rows} == {"acme"} and len(rows) == 3
    assert count == 3
    assert {name for _, name in joined} == {"acme launch"}


def test_get_by_primary_key_of_another_tenants_row_is_none(any_db):
    seed(any_db)
    with system_session(db=any_db) as session:
        globex_id = session.scalar(sa.select(FintechTransaction.id).where(FintechTransaction.tenant_id == "globex"))
    with tenant_session("acme", db=any_db) as session:
        assert session.get(FintechTransaction, globex_id) is None


def test_updates_and_deletes_without_a_filter_touch_only_the_tenant(any_db):
    seed(any_db)
    with tenant_session("acme", db=any_db) as session:
        session.execute(sa.update(FintechTransaction).values(status="FAILED"))
        session.execute(sa.delete(Campaign))
    with system_session(db=any_db) as session:
        statuses = dict(session.execute(
            sa.select(FintechTransaction.tenant_id, sa.func.max(FintechTransaction.status))
            .group_by(FintechTransaction.tenant_id)
        ).all())
        campaigns = session.scalars(sa.select(Campaign.tenant_id)).all()
    assert statuses == {"acme": "FAILED", "globex": None}
    assert campaigns == ["globex"]


def test_a_session_with_no_tenant_cannot_read_tenant_data(any_db):
    seed(any_db)
    with pytest.raises(TenantScopeError):
        with any_db.session() as session:
            session.scalars(sa.select(FintechTransaction)).all()


def test_rows_get_the_sessions_tenant_and_never_anothers(any_db):
    with tenant_session("acme", db=any_db) as session:
        row = FintechTransaction(txn_id="N1", amount=Decimal("1.00"))
        session.add(row)
    assert row.tenant_id == "acme"
    with pytest.raises(TenantScopeError):
        with tenant_session("acme", db=any_db) as session:
            session.add(FintechTransaction(tenant_id="globex", txn_id="N2", amount=Decimal("1.00")))
    with pytest.raises(TenantScopeError):
        with any_db.session() as session:
            session.add(FintechTransaction(tenant_id="globex", txn_id="N3", amount=Decimal("1.00")))


# -- row-level security: the backstop on PostgreSQL -----------------------------------------


def test_the_application_role_owns_no_table_and_is_not_superuser(db, settings):
    role = make_url(settings.database_url).username
    with db.engine.connect() as connection:
        superuser, bypass = connection.execute(
            sa.text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
        owned = connection.scalar(
            sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = :r"), {"r": role}
        )
        forced = connection.execute(sa.text(
            "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity ORDER BY relname"
        )).scalars().all()
    assert (superuser, bypass, owned) == (False, False, 0)
    assert set(forced) >= {"campaign_jobs", "campaigns", "fintech_transactions", "reconciliations", "users"}


def test_raw_sql_with_no_tenant_set_returns_no_rows(db):
    seed()
    with db.engine.begin() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM fintech_transactions")) == 0
        connection.execute(sa.text("SELECT set_config('fairq.tenant_id', 'globex', true)"))
        assert connection.scalar(sa.text("SELECT count(*) FROM fintech_transactions")) == 2


def test_raw_sql_cannot_write_into_another_tenant(db):
    with pytest.raises(DBAPIError, match="row-level security"):
        with db.engine.begin() as connection:
            connection.execute(sa.text("SELECT set_config('fairq.tenant_id', 'acme', true)"))
            connection.execute(sa.text(
                "INSERT INTO fintech_transactions (tenant_id, txn_id, amount, currency, created_at) "
                "VALUES ('globex', 'X', 1, 'INR', now())"
            ))


def test_the_tenant_setting_lasts_one_transaction(db):
    seed()
    with tenant_session("acme") as session:
        assert session.scalar(sa.text("SELECT count(*) FROM fintech_transactions")) == 3
    with db.engine.connect() as connection:  # the same pooled connection, a new transaction
        assert connection.scalar(sa.text("SELECT count(*) FROM fintech_transactions")) == 0
