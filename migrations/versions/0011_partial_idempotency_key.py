"""jobs: the idempotency key's unique index holds only the jobs that have a key

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

No update of a job can be a HOT update (its state is indexed), so each of the three to four
writes of a job's life adds an entry to every index whose rows it belongs to. The unique
constraint on (tenant_id, idempotency_key) held an entry for every job, though NULL keys are
never compared; most jobs have no key. A partial unique index on the jobs that have one keeps
the same guarantee with one index entry fewer per write.

SQLite cannot drop a constraint without rebuilding the table (which other tables reference):
there the old constraint stays beside the new index: the same rule, and the embedded default's
writes are few.
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAME = "uq_jobs_tenant_id_idempotency_key"
HAS_KEY = "idempotency_key IS NOT NULL"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(NAME, "jobs", type_="unique")
        op.create_index(NAME, "jobs", ["tenant_id", "idempotency_key"], unique=True,
                        postgresql_where=sa.text(HAS_KEY))
    else:
        op.create_index(NAME, "jobs", ["tenant_id", "idempotency_key"],
                        unique=True, sqlite_where=sa.text(HAS_KEY))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(NAME, table_name="jobs")
        op.create_unique_constraint(NAME, "jobs", ["tenant_id", "idempotency_key"])
    else:
        op.drop_index(NAME, table_name="jobs")
