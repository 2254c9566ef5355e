"""The dashboard's reconciliation pages: start a run, list runs, a run's summary and breaks."""
from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from flask import redirect, request, url_for

from app.downloads import csv_download
from app.errors import Invalid, ServiceError
from app.reconcile import service
from app.reconcile.models import BREAK_STATUSES, MISMATCH_TYPES
from app.reconcile.rules import reconcilable_sources
from app.tenancy.identity import current_identity, request_session
from app.web import bp, login_required
from app.web.views import PAGE, TENANT_USERS, _older, _settings, render_page

#: A run in one of these states changes no more.
FINAL_RUN_STATES = ("succeeded", "failed", "cancelled")


def _runs_page(form, *, error: str | None = None):
    runs = service.list_runs(request_session(), after=request.args.get("after", type=int), limit=PAGE)
    return render_page("reconciliation.html", title="Reconciliation", runs=runs, form=form, error=error,
                       sources=reconcilable_sources(), more=_older("web.reconciliation", runs))


def _run_request(form) -> dict:
    """The form's run, in the service's terms. Raises: Invalid, naming the field in the API's words."""
    try:
        period_from, period_to = date.fromisoformat(form.get("from", "")), date.fromisoformat(form.get("to", ""))
    except ValueError:
        raise Invalid("from and to are dates (YYYY-MM-DD)") from None
    try:
        tolerance = Decimal(form.get("amount_tolerance") or "0.00")
    except InvalidOperation:
        raise Invalid("amount_tolerance must be 0 or more, with at most two decimals") from None
    hours = form.get("date_tolerance_hours") or "48"
    if not hours.lstrip("-").isdigit():
        raise Invalid("date_tolerance_hours must be a whole number of hours")
    return {"source": form.get("source", ""), "period_from": period_from, "period_to": period_to,
            "amount_tolerance": tolerance, "date_tolerance_hours": int(hours)}


@bp.route("/reconciliation", methods=["GET", "POST"])
@login_required(*TENANT_USERS)
def reconciliation():
    if request.method == "GET":
        return _runs_page({})
    form = request.form
    session = request_session()
    try:
        _job, run, _created = service.enqueue_reconcile(session, _settings(), **_run_request(form))
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return _runs_page(form, error=exc.detail), exc.status
    return redirect(url_for("web.reconciliation_run", run_id=run.id))


def _break_filter(run_id: int) -> service.BreakFilter:
    args = request.args
    return service.BreakFilter(run_id=run_id, mismatch_type=args.get("mismatch_type") or None,
                               status=args.get("status") or None)


@bp.get("/reconciliation/runs/<int:run_id>")
@login_required(*TENANT_USERS)
def reconciliation_run(run_id: int):
    """A run's summary and the breaks it changed; ``part=live``: the part that refreshes itself."""
    session = request_session()
    run = service.get_run(session, run_id)
    where = _break_filter(run_id)
    breaks = service.search(session, where, after=request.args.get("after", type=int), limit=PAGE)
    filters = {"mismatch_type": where.mismatch_type or "", "status": where.status or ""}
    template = "_run_detail.html" if request.args.get("part") == "live" else "reconciliation_run.html"
    return render_page(template, title=f"Reconciliation run {run_id}", run=run, breaks=breaks, filters=filters,
                       final=run.state in FINAL_RUN_STATES, mismatch_types=MISMATCH_TYPES,
                       break_statuses=BREAK_STATUSES, more=_older("web.reconciliation_run", breaks))


@bp.get("/reconciliation/runs/<int:run_id>/breaks.csv")
@login_required(*TENANT_USERS)
def reconciliation_csv(run_id: int):
    """The run's breaks (with the page's filters) as CSV, as ``GET /reconciliations?format=csv`` gives them."""
    session = request_session()
    service.get_run(session, run_id)  # another tenant's run: 404
    where = _break_filter(run_id)
    service.export_csv(session, where)  # a bad filter: a 400 page now, not a broken download later
    return csv_download(current_identity().tenant_id, lambda session: service.export_csv(session, where),
                        f"reconciliation-run-{run_id}.csv")
