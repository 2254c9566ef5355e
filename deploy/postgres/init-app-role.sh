#!/bin/sh
# Runs once, when the PostgreSQL volume is new: the role the application connects as. It owns
# no table, so row-level security binds it; `fairq db upgrade` (the migrate service) grants it
# data access as the owner.
set -eu
psql -v ON_ERROR_STOP=1 -v app_password="$APP_DB_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE fairq_app LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD :'app_password';
SQL
