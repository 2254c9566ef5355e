"""Alembic migrations of fairq (shipped inside the distribution: `fairq db upgrade` needs them)."""
