"""reconciliation: runs, and breaks with a stable identity across runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

``reconciliation_runs`` records each run (source, period, tolerances, state, summary).
The seed's ``reconciliations`` keeps its columns and gains what a break needs to live
across runs: the run that last saw it, a ``break_key`` unique per tenant, its status
(new / persisting / resolved), the rule that fired, and both sides' amounts, times and
statuses. ``fintech_transactions`` gets an index on (tenant_id, reference): a run looks up
the rows of a few RRNs / UTRs (ties on one side, the rows no key paired) by it.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Row-level security as in 0002: the transaction's tenant, or a session opened for all tenants.
POLICY = (
    "tenant_id = current_setting('fairq.tenant_id', true) "
    "OR current_setting('fairq.all_tenants', true) = 'on'"
)

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: The columns 0005 adds to ``reconciliations``.
NEW_COLUMNS = (
    ("run_id", sa.BigInteger()), ("first_run_id", sa.BigInteger()), ("break_key", sa.String(length=200)),
    ("source", sa.String(length=32)), ("rule", sa.String(length=64)),
    ("internal_amount", sa.Numeric(precision=18, scale=2)), ("external_amount", sa.Numeric(precision=18, scale=2)),
    ("internal_time", sa.DateTime(timezone=True)), ("external_time", sa.DateTime(timezone=True)),
    ("internal_status", sa.String(length=16)), ("external_status", sa.String(length=16)),
    ("updated_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", BigID, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", BigID, nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=False),
        sa.Column("period_to", sa.Date(), nullable=False),
        sa.Column("amount_tolerance", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("date_tolerance_hours", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("summary", JSONType, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_reconciliation_runs_job_id_jobs"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint("job_id", name=op.f("uq_reconciliation_runs_job_id")),
    )
    with op.batch_alter_table("reconciliation_runs") as batch_op:
        batch_op.create_index("ix_reconciliation_runs_tenant_id_id", ["tenant_id", "id"], unique=False)

    with op.batch_alter_table("reconciliations") as batch_op:
        for name, type_ in NEW_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=16), server_default="new", nullable=False))
        batch_op.create_unique_constraint(
            batch_op.f("uq_reconciliations_tenant_id_break_key"), ["tenant_id", "break_key"]
        )

    with op.batch_alter_table("fintech_transactions") as batch_op:
        batch_op.create_index("ix_fintech_transactions_tenant_id_reference", ["tenant_id", "reference"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE reconciliation_runs ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE reconciliation_runs FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON reconciliation_runs USING ({POLICY}) WITH CHECK ({POLICY})"
        )


def downgrade() -> None:
    with op.batch_alter_table("fintech_transactions") as batch_op:
        batch_op.drop_index("ix_fintech_transactions_tenant_id_reference")
    with op.batch_alter_table("reconciliations") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_reconciliations_tenant_id_break_key"), type_="unique")
        batch_op.drop_column("status")
        for name, _type in reversed(NEW_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("reconciliation_runs") as batch_op:
        batch_op.drop_index("ix_reconciliation_runs_tenant_id_id")
    op.drop_table("reconciliation_runs")
