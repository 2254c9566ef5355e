"""campaigns: execution state, the processing log's delivery key, webhook settings

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

``campaigns`` gets what a run needs (channel, message template, audience, send_at,
a cron schedule, the job written with it, the current run's counters).
``campaign_jobs`` keeps the seed's columns and gains the delivery it logs (run,
recipient), with at most one ``success`` per delivery. ``webhook_settings`` holds
each tenant's webhook URL, signing secret and the private hosts an operator allowed.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: Row-level security as in 0002: the transaction's tenant, or a session opened for all tenants.
POLICY = (
    "tenant_id = current_setting('fairq.tenant_id', true) "
    "OR current_setting('fairq.all_tenants', true) = 'on'"
)

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
STATUSES = "status IN ('scheduled', 'pending', 'running', 'completed', 'failed', 'cancelled')"


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=32), server_default="log", nullable=False))
        batch_op.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("audience", JSONType, nullable=True))
        batch_op.add_column(sa.Column("send_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("schedule", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("run", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("run_job_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("recipients", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("remaining", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("fanout_done", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.create_check_constraint(batch_op.f("ck_campaigns_status"), STATUSES)

    with op.batch_alter_table("campaign_jobs") as batch_op:
        batch_op.add_column(sa.Column("run", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("recipient", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index("ix_campaign_jobs_delivery", ["campaign_id", "run", "recipient", "id"], unique=False)
        batch_op.create_index(
            "uq_campaign_jobs_success", ["campaign_id", "run", "recipient"], unique=True,
            postgresql_where=sa.text("status = 'success'"), sqlite_where=sa.text("status = 'success'"),
        )

    op.create_table(
        "webhook_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("secret", sa.String(length=128), nullable=True),
        sa.Column("allowed_hosts", JSONType, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_settings_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_webhook_settings")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE webhook_settings ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE webhook_settings FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON webhook_settings USING ({POLICY}) WITH CHECK ({POLICY})"
        )


def downgrade() -> None:
    op.drop_table("webhook_settings")
    with op.batch_alter_table("campaign_jobs") as batch_op:
        batch_op.drop_index("uq_campaign_jobs_success")
        batch_op.drop_index("ix_campaign_jobs_delivery")
        batch_op.drop_column("recipient")
        batch_op.drop_column("run")
    # the seed's campaigns had no status constraint: a campaign keeps its status
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_campaigns_status"), type_="check")
        for column in ("last_error", "finished_at", "started_at", "fanout_done", "remaining", "recipients",
                       "run_job_id", "run", "job_id", "next_run_at", "schedule", "send_at", "audience",
                       "message", "channel"):
            batch_op.drop_column(column)
