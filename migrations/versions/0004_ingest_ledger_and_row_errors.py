"""ingest: canonical columns and a ledger in the transactions' key; rejected rows

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

``fintech_transactions`` gets the canonical columns source plugins give (ledger,
direction, reference, counterparty, IFSC, settlement date) and the ingest job
and line each row came from. Its unique key becomes (tenant_id, ledger, txn_id):
the tenant's internal record of a payment and the bank's external one are both
kept, even under the same txn_id. Existing rows are external (bank / switch files).
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Row-level security as in 0002: the transaction's tenant, or a session opened for all tenants.
POLICY = (
    "tenant_id = current_setting('fairq.tenant_id', true) "
    "OR current_setting('fairq.all_tenants', true) = 'on'"
)

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("fintech_transactions") as batch_op:
        batch_op.add_column(
            sa.Column("ledger", sa.String(length=8), server_default="external", nullable=False)
        )
        batch_op.add_column(sa.Column("direction", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("reference", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("counterparty", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("ifsc", sa.String(length=11), nullable=True))
        batch_op.add_column(sa.Column("settlement_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("line", sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_fintech_transactions_tenant_id_txn_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_fintech_transactions_tenant_id_ledger_txn_id"), ["tenant_id", "ledger", "txn_id"]
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_fintech_transactions_ledger"), "ledger IN ('external', 'internal')"
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_fintech_transactions_direction"), "direction IS NULL OR direction IN ('DR', 'CR')"
        )

    op.create_table(
        "ingest_row_errors",
        sa.Column("id", BigID, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", BigID, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_ingest_row_errors_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_row_errors")),
    )
    with op.batch_alter_table("ingest_row_errors") as batch_op:
        batch_op.create_index("ix_ingest_row_errors_job_id_line", ["job_id", "line"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ingest_row_errors ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE ingest_row_errors FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON ingest_row_errors USING ({POLICY}) WITH CHECK ({POLICY})"
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_row_errors") as batch_op:
        batch_op.drop_index("ix_ingest_row_errors_job_id_line")
    op.drop_table("ingest_row_errors")
    # The old key (tenant_id, txn_id) has no room for a second ledger: internal records go.
    op.execute("DELETE FROM fintech_transactions WHERE ledger = 'internal'")
    with op.batch_alter_table("fintech_transactions") as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_fintech_transactions_direction"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_fintech_transactions_ledger"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("uq_fintech_transactions_tenant_id_ledger_txn_id"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_fintech_transactions_tenant_id_txn_id"), ["tenant_id", "txn_id"]
        )
        for column in ("line", "job_id", "settlement_date", "ifsc", "counterparty", "reference",
                       "direction", "ledger"):
            batch_op.drop_column(column)
