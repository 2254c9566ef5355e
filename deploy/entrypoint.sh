#!/bin/sh
# The container's command picks the fairq process; every setting comes from FAIRQ_* variables.
#   api        the HTTP API and dashboard (gunicorn; WEB_CONCURRENCY processes, port PORT or 8000)
#   worker     Dramatiq workers and the fair dispatcher (extra arguments go to `dramatiq`,
#              e.g. `worker -Q fairq.t.acme` for acme's dedicated queue)
#   scheduler  the periodic scheduler (periodiq); run exactly one
#   migrate    upgrade the database as FAIRQ_DATABASE_OWNER_URL, grant the application role
#   up         API + workers + scheduler in one process (a trial, not production)
#   anything else runs `fairq ...` (fairq tenants list, fairq dlq list, ...)
set -eu
command=${1:-api}
[ "$#" -gt 0 ] && shift
case "$command" in
  api)
    exec gunicorn --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_CONCURRENCY:-2}" \
      --graceful-timeout 30 "app:create_app()" "$@" ;;
  worker)
    # SIGTERM drains: running jobs get up to 10 minutes to finish (the pod's grace period is
    # longer); unfinished ones go back to the broker, and the lease reconciler covers the rest.
    exec dramatiq app.tasks --processes "${WORKER_PROCESSES:-1}" \
      --threads "${FAIRQ_WORKER_THREADS:-8}" --worker-shutdown-timeout 600000 "$@" ;;
  scheduler)
    exec periodiq app.tasks "$@" ;;
  migrate)
    exec fairq db upgrade "$@" ;;
  up)
    exec fairq up --host 0.0.0.0 "$@" ;;
  *)
    exec fairq "$command" "$@" ;;
esac
