"""tenants, user roles, revoked tokens, and row-level security on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Tables whose rows belong to one tenant: row-level security keys them on fairq.tenant_id.
TENANT_TABLES = ("users", "fintech_transactions", "reconciliations", "campaigns", "campaign_jobs")

#: The policy: the transaction's tenant, or a session explicitly opened for all tenants.
POLICY = (
    "tenant_id = current_setting('fairq.tenant_id', true) "
    "OR current_setting('fairq.all_tenants', true) = 'on'"
)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("plan", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("weight > 0", name=op.f("ck_tenants_weight_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    # the reserved tenant of the platform's operators, and one tenant for each existing user's tenant id
    op.execute(
        "INSERT INTO tenants (id, name, weight, plan, paused, created_at) "
        "VALUES ('_platform', 'fairq operators', 1, 'default', false, CURRENT_TIMESTAMP)"
    )
    op.execute(
        "INSERT INTO tenants (id, name, weight, plan, paused, created_at) "
        "SELECT DISTINCT tenant_id, tenant_id, 1, 'default', false, CURRENT_TIMESTAMP FROM users "
        "WHERE tenant_id <> '_platform'"
    )
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_tokens")),
    )
    with op.batch_alter_table("revoked_tokens") as batch_op:
        batch_op.create_index(batch_op.f("ix_revoked_tokens_expires_at"), ["expires_at"], unique=False)

    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), server_default="member", nullable=False))
        batch_op.add_column(sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_check_constraint(
            batch_op.f("ck_users_role"), "role IN ('admin', 'member', 'operator')"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_users_tenant_id_tenants"), "tenants", ["tenant_id"], ["id"]
        )

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({POLICY}) WITH CHECK ({POLICY})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_users_tenant_id_tenants"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("ck_users_role"), type_="check")
        batch_op.drop_column("disabled")
        batch_op.drop_column("role")
    with op.batch_alter_table("revoked_tokens") as batch_op:
        batch_op.drop_index(batch_op.f("ix_revoked_tokens_expires_at"))
    op.drop_table("revoked_tokens")
    op.drop_table("tenants")
