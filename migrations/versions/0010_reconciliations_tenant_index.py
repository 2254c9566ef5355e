"""reconciliations: drop the tenant_id index the unique (tenant_id, break_key) key already serves

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

The seed's ``reconciliations`` had an index on ``tenant_id`` alone; since 0005 the unique key
(tenant_id, break_key) leads with the same column, so every lookup by tenant can use it, and
the single-column index only cost every break written one more index entry (a run of the
reconciliation benchmark writes about 99,500).
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_reconciliations_tenant_id", table_name="reconciliations")


def downgrade() -> None:
    op.create_index("ix_reconciliations_tenant_id", "reconciliations", ["tenant_id"])
