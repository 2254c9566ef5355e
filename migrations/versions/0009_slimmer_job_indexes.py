"""jobs: indexes only where the rows are read, so a job's state changes write less

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Every job is updated three times (dispatched, running, finished), and no update can be a
HOT update (the state is indexed), so each one adds an entry to every index of the table.
Two indexes held every job for queries that only read a few:

- ``ix_jobs_state_id`` (state, id) served the counts of waiting, in-flight and dead jobs
  and the lease check; it now holds only the jobs in those states, so a job that
  succeeds leaves it (the table's largest part, succeeded jobs, is no longer indexed);
- ``ix_jobs_not_before`` served the due check of backoffs; it now holds only the jobs
  with a ``not_before`` (a retry waiting), not one NULL entry per job and update.
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: The states the counts, the lease check and the dead-letter views read by state.
LISTED = "state IN ('queued', 'failed', 'dispatched', 'running', 'dead')"


def upgrade() -> None:
    op.drop_index("ix_jobs_state_id", table_name="jobs")
    op.drop_index("ix_jobs_not_before", table_name="jobs")
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"],
                    postgresql_where=sa.text(LISTED), sqlite_where=sa.text(LISTED))
    op.create_index("ix_jobs_not_before", "jobs", ["not_before"],
                    postgresql_where=sa.text("not_before IS NOT NULL"),
                    sqlite_where=sa.text("not_before IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_jobs_not_before", table_name="jobs")
    op.drop_index("ix_jobs_state_id", table_name="jobs")
    op.create_index("ix_jobs_not_before", "jobs", ["not_before"])
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"])
