"""usage_monthly: monthly roll-ups of usage_daily, with row-level security

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

A periodic job sums ``usage_daily`` per tenant, month and kind into this table,
so usage reports over months and the billing export read a row per month
instead of one per day.
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: Row-level security as in 0002: the transaction's tenant, or a session opened for all tenants.
POLICY = (
    "tenant_id = current_setting('fairq.tenant_id', true) "
    "OR current_setting('fairq.all_tenants', true) = 'on'"
)


def upgrade() -> None:
    op.create_table(
        "usage_monthly",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("jobs", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("run_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("rows", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("messages", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("failures", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "month", "kind", name=op.f("pk_usage_monthly")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE usage_monthly ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE usage_monthly FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON usage_monthly USING ({POLICY}) WITH CHECK ({POLICY})")


def downgrade() -> None:
    op.drop_table("usage_monthly")
