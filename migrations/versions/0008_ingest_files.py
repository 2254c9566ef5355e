"""ingest: the files ingest jobs read to their end

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

``ingest_files`` records each file an ingest job read completely: its path, the object
store's version of it, the parser, and the counts. An identical file ingested again is
recognised from it instead of being parsed again.
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Row-level security as in 0002: the row's tenant, or a session opened for all tenants.
POLICY = (
    "tenant_id = current_setting('fairq.tenant_id', true) "
    "OR current_setting('fairq.all_tenants', true) = 'on'"
)

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ingest_files",
        sa.Column("id", BigID, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", BigID, nullable=False),
        sa.Column("s3_path", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=200), nullable=False),
        sa.Column("ledger", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("parser", sa.String(length=200), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_loaded", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_ingest_files_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_files")),
    )
    with op.batch_alter_table("ingest_files") as batch_op:
        batch_op.create_index("ix_ingest_files_tenant_id_s3_path", ["tenant_id", "s3_path"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ingest_files ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE ingest_files FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON ingest_files USING ({POLICY}) WITH CHECK ({POLICY})")


def downgrade() -> None:
    with op.batch_alter_table("ingest_files") as batch_op:
        batch_op.drop_index("ix_ingest_files_tenant_id_s3_path")
    op.drop_table("ingest_files")
