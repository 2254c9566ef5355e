"""jobs and usage, with row-level security on both

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

#: Row-level security as in 0002: the transaction's tenant, or a session opened for all tenants.
POLICY = (
    "tenant_id = current_setting('fairq.tenant_id', true) "
    "OR current_setting('fairq.all_tenants', true) = 'on'"
)


def upgrade() -> None:
    op.create_table('usage_daily',
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('jobs', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('run_seconds', sa.Float(), server_default='0', nullable=False),
    sa.Column('rows', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('messages', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('failures', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'day', 'kind', name=op.f('pk_usage_daily'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.SmallInteger(), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('cost_estimate', sa.Float(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=100), nullable=True),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('run_seconds', sa.Float(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('progress_done', sa.BigInteger(), nullable=True),
    sa.Column('progress_total', sa.BigInteger(), nullable=True),
    sa.Column('progress_message', sa.String(length=500), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'dispatched', 'running', 'succeeded', 'failed', 'dead', 'cancelled')", name=op.f('ck_jobs_state')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_jobs_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name=op.f('uq_jobs_tenant_id_idempotency_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(
            'ix_jobs_dispatchable', ['tenant_id', 'priority', 'id'], unique=False,
            postgresql_where=sa.text("state IN ('queued', 'failed')"),
            sqlite_where=sa.text("state IN ('queued', 'failed')"),
        )
        batch_op.create_index('ix_jobs_state_id', ['state', 'id'], unique=False)
        batch_op.create_index('ix_jobs_tenant_id_id', ['tenant_id', 'id'], unique=False)
        batch_op.create_index('ix_jobs_not_before', ['not_before'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in ("jobs", "usage_daily"):
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({POLICY}) WITH CHECK ({POLICY})")


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_not_before')
        batch_op.drop_index('ix_jobs_tenant_id_id')
        batch_op.drop_index('ix_jobs_state_id')
        batch_op.drop_index('ix_jobs_dispatchable')

    op.drop_table('jobs')
    op.drop_table('usage_daily')
