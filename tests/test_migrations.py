"""Migrations run on PostgreSQL and SQLite and match the models."""
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import app.models  # noqa: F401
from app import migrate
from app.db import Base, Database
from app.settings import Settings
from tests.conftest import clean_env, ensure_database, run_fairq

SEED_TABLES = {"fintech_transactions", "reconciliations", "users", "campaigns", "campaign_jobs"}


def scratch_postgres(settings) -> Database:
    url = settings.database_owner_url + "_migrations"  # beside the test database, never shared
    ensure_database(url)
    db = Database(Settings.load(database_url=url).sqlalchemy_url)
    with db.engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    return db


def tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def assert_matches_models(db: Database) -> None:
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"migrations and models disagree: {diff}"


def test_upgrade_downgrade_upgrade_on_postgresql(settings):
    db = scratch_postgres(settings)
    try:
        migrate.upgrade(db)
        assert SEED_TABLES <= tables(db)
        migrate.downgrade(db, "base")
        assert tables(db) == set()
        migrate.upgrade(db)
        assert migrate.current(db) == migrate.head()
        assert_matches_models(db)
    finally:
        db.dispose()


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(db)
    migrate.downgrade(db, "base")
    assert tables(db) == set()
    migrate.upgrade(db)
    assert SEED_TABLES <= tables(db)
    assert_matches_models(db)


def test_seed_constraints_on_postgresql(settings, db):
    inspector = sa.inspect(db.engine)
    columns = {c["name"]: c for c in inspector.get_columns("fintech_transactions")}
    assert str(columns["amount"]["type"]) == "NUMERIC(18, 2)"
    assert str(columns["currency"]["type"]) == "CHAR(3)"
    assert "INR" in columns["currency"]["default"]
    assert str(columns["raw_row"]["type"]) == "JSONB"
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("fintech_transactions")}
    assert ("tenant_id", "ledger", "txn_id") in unique  # internal and external records both kept
    assert ("tenant_id", "email") in {tuple(u["column_names"]) for u in inspector.get_unique_constraints("users")}
    job_columns = {c["name"] for c in inspector.get_columns("campaign_jobs")}
    assert {"campaign_id", "tenant_id", "status", "payload", "attempts", "last_error", "processed_at"} <= job_columns


def test_a_duplicate_transaction_is_refused_by_the_database(db):
    from decimal import Decimal

    from sqlalchemy.exc import IntegrityError

    from app.ingest.models import FintechTransaction
    from app.tenancy.scoping import tenant_session

    with tenant_session("t1") as session:
        session.add(FintechTransaction(tenant_id="t1", txn_id="X1", amount=Decimal("10.50")))
    try:
        with tenant_session("t1") as session:
            session.add(FintechTransaction(tenant_id="t1", txn_id="X1", amount=Decimal("1")))
    except IntegrityError:
        pass
    else:
        raise AssertionError("the unique key (tenant_id, txn_id) did not hold")
    with tenant_session("t1") as session:
        row = session.scalar(sa.select(FintechTransaction))
        assert row.amount == Decimal("10.50") and row.currency == "INR"


def test_fairq_db_commands(tmp_path):
    env = clean_env()
    up = run_fairq("db", "upgrade", env=env, cwd=tmp_path)
    assert up.returncode == 0 and f"database at {migrate.head()}" in up.stdout
    current = run_fairq("db", "current", env=env, cwd=tmp_path)
    assert current.returncode == 0 and "up to date" in current.stdout
    down = run_fairq("db", "downgrade", "base", env=env, cwd=tmp_path)
    assert down.returncode == 0 and "database at base" in down.stdout
    bad = run_fairq("db", "downgrade", "no-such-revision", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "no-such-revision" in bad.stderr
