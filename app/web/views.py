"""The dashboard's pages. Each view parses a form or query, calls a service, renders a template."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from http import HTTPStatus
from decimal import Decimal, InvalidOperation

from flask import Response, current_app, redirect, render_template, request, url_for
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    get_jwt,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
)

from app.errors import ServiceError
from app.ingest import rejects, service as ingest_service, transactions
from app.ingest.models import LEDGERS
from app.ingest.sources import installed_sources
from app.db import get_db, utcnow
from app.quota import quotas, usage
from app.quota.plans import plan_for
from app.scheduling import dlq, jobs as job_service, stats
from app.scheduling.models import STATES as JOB_STATES
from app.tenancy import service as tenancy
from app.tenancy.identity import Identity, current_identity, request_session
from app.tenancy.scoping import system_session
from app.tenancy.tokens import expires_at
from app.web import bp, check_form_csrf, csrf_field_value, form_csrf, login_required, page_for, _safe_next

#: Rows on one page of a list.
PAGE = 50
#: Any user of a tenant; platform operators.
TENANT_USERS, OPERATORS = ("admin", "member"), ("operator",)


def _settings():
    return current_app.config["FAIRQ_SETTINGS"]


def render_page(template: str, **context) -> str:
    """A page, with who is logged in (if anyone) and the forms' CSRF value."""
    try:
        claims = get_jwt()
    except RuntimeError:
        claims = {}
    identity = None
    if claims:
        identity = current_identity()
    return render_template(
        f"web/{template}", identity=identity, csrf=csrf_field_value() if claims else form_csrf(), **context
    )


def _older(endpoint: str, items: list) -> str | None:
    """The link to the next (older) page of a full page of ``items``, keeping the path and the filters."""
    if len(items) < PAGE:
        return None
    return url_for(endpoint, **{**(request.view_args or {}), **request.args.to_dict(), "after": items[-1].id})


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    """A page for what the services refuse (no such job, ...), instead of the API's problem+json."""
    return render_page("message.html", title=HTTPStatus(exc.status).phrase, message=exc.detail), exc.status


# -- logging in and out ---------------------------------------------------------------------


def _logged_in(identity: Identity, target: str | None) -> Response:
    response = redirect(_safe_next(target) or page_for(identity))
    set_access_cookies(response, create_access_token(str(identity.user_id), additional_claims=identity.claims()))
    set_refresh_cookies(response, create_refresh_token(str(identity.user_id), additional_claims=identity.claims()))
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = request.values.get("next")
    if request.method == "GET":
        return render_page("login.html", title="Log in", next=target, form={})
    form = request.form
    if not check_form_csrf():
        return render_page("login.html", title="Log in", next=target, form=form,
                           error="The form expired: please send it again."), 400
    try:
        identity = tenancy.log_in(
            _settings(), current_app.extensions["fairq.login_limits"], tenant_id=form.get("tenant_id", "").strip(),
            email=form.get("email", ""), password=form.get("password", ""), address=request.remote_addr or "unknown",
        )
    except ServiceError as exc:
        return render_page("login.html", title="Log in", next=target, form=form, error=exc.detail), exc.status
    return _logged_in(identity, target)


@bp.route("/register", methods=["GET", "POST"])
def register():
    if request.method == "GET":
        return render_page("register.html", title="Create a tenant", form={})
    form = request.form
    if not check_form_csrf():
        return render_page("register.html", title="Create a tenant", form=form,
                           error="The form expired: please send it again."), 400
    try:
        user = tenancy.register(_settings(), tenant_id=form.get("tenant_id", "").strip(),
                                email=form.get("email", ""), password=form.get("password", ""))
    except ServiceError as exc:
        return render_page("register.html", title="Create a tenant", form=form, error=exc.detail), exc.status
    return _logged_in(Identity(user_id=user.id, tenant_id=user.tenant_id, role=user.role), None)


@bp.post("/logout")
@login_required(*TENANT_USERS, *OPERATORS)
def logout():
    claims, identity = get_jwt(), current_identity()
    current_app.extensions["fairq.revocations"].revoke(
        jti=claims["jti"], tenant_id=identity.tenant_id, user_id=identity.user_id, expires_at=expires_at(claims)
    )
    response = redirect(url_for("web.login"))
    unset_jwt_cookies(response)
    return response


@bp.get("/")
@login_required(*TENANT_USERS, *OPERATORS)
def home():
    return redirect(page_for(current_identity()))


# -- a tenant's jobs ------------------------------------------------------------------------


def _job_filters() -> dict:
    state = request.args.get("state") or None
    return {"state": state if state in JOB_STATES else None, "kind": request.args.get("kind") or None}


@bp.get("/jobs")
@login_required(*TENANT_USERS)
def jobs():
    filters = _job_filters()
    items = job_service.list_jobs(request_session(), after=request.args.get("after", type=int), limit=PAGE, **filters)
    return render_page("jobs.html", title="Jobs", jobs=items, filters=filters, states=JOB_STATES,
                       more=_older("web.jobs", items))


@bp.get("/jobs/rows")
@login_required(*TENANT_USERS)
def job_rows():
    """The rows of the jobs table alone, for the page's live refresh."""
    items = job_service.list_jobs(request_session(), after=request.args.get("after", type=int), limit=PAGE,
                                  **_job_filters())
    return render_page("_job_rows.html", jobs=items)


@bp.get("/jobs/<int:job_id>")
@login_required(*TENANT_USERS)
def job(job_id: int):
    found = job_service.get_job(request_session(), job_id)
    template = "_job_detail.html" if request.args.get("part") == "detail" else "job.html"
    return render_page(template, title=f"Job {job_id}", job=found)


@bp.post("/jobs/<int:job_id>/cancel")
@login_required(*TENANT_USERS)
def cancel_job(job_id: int):
    session = request_session()
    try:
        job_service.cancel_job(session, job_id)
        session.commit()
    except ServiceError as exc:
        if exc.status == 404:
            raise
        return render_page("job.html", title=f"Job {job_id}", job=job_service.get_job(session, job_id),
                           error=exc.detail), exc.status
    return redirect(url_for("web.job", job_id=job_id))


@bp.get("/jobs/<int:job_id>/errors.csv")
@login_required(*TENANT_USERS)
def job_errors(job_id: int):
    return Response(
        rejects.export_csv(request_session(), job_id), mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-errors.csv"'},
    )


# -- ingest ---------------------------------------------------------------------------------


def _source_names() -> list[str]:
    return sorted(name for name, source in installed_sources().items() if source.parse is not None)


@bp.route("/ingest", methods=["GET", "POST"])
@login_required(*TENANT_USERS)
def ingest():
    context = {"title": "Ingest a file", "sources": _source_names(), "ledgers": LEDGERS}
    if request.method == "GET":
        return render_page("ingest.html", form={}, **context)
    form, upload = request.form, request.files.get("file")
    identity, settings = current_identity(), _settings()
    try:
        if upload is None or not upload.filename:
            raise ServiceError("choose a file to upload", slug="invalid-request", status=400)
        s3_path, _size = ingest_service.upload(settings, identity.tenant_id, upload.stream, upload.filename)
        session = request_session()
        job, _created = ingest_service.enqueue_ingest(
            session, settings, s3_path=s3_path, source=form.get("source", ""), ledger=form.get("ledger", "external"),
        )
        session.commit()
    except ServiceError as exc:
        return render_page("ingest.html", form=form, error=exc.detail, **context), exc.status
    return redirect(url_for("web.job", job_id=job.id))


# -- transactions ---------------------------------------------------------------------------


def _date(text: str | None, *, end: bool = False) -> datetime | None:
    if not text:
        return None
    day = datetime.fromisoformat(text)
    if end and len(text) <= 10:  # a date alone: up to the end of that day
        return datetime.combine(day.date(), time.max)
    return day


def _amount(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


@bp.get("/transactions")
@login_required(*TENANT_USERS)
def transactions_page():
    args = request.args
    try:
        where = transactions.TransactionFilter(
            source=args.get("source") or None, ledger=args.get("ledger") or None, status=args.get("status") or None,
            since=_date(args.get("since")), until=_date(args.get("until"), end=True),
            min_amount=_amount(args.get("min_amount")), max_amount=_amount(args.get("max_amount")),
            reference_id=args.get("reference_id") or None, txn_id=args.get("txn_id") or None,
        )
    except (ValueError, InvalidOperation):
        return render_page("transactions.html", title="Transactions", rows=[], args=args, sources=_source_names(),
                           ledgers=LEDGERS, error="Dates are YYYY-MM-DD and amounts are numbers."), 400
    rows = transactions.search(request_session(), where, after=args.get("after", type=int), limit=PAGE)
    return render_page("transactions.html", title="Transactions", rows=rows, args=args, sources=_source_names(),
                       ledgers=LEDGERS, more=_older("web.transactions_page", rows))


# -- usage ----------------------------------------------------------------------------------


def _usage_query() -> tuple[date, date, str]:
    """The report's range and granularity from the query (default: the last 30 days, by day)."""
    args = request.args
    end = date.fromisoformat(args["to"]) if args.get("to") else utcnow().date()
    start = date.fromisoformat(args["from"]) if args.get("from") else end - timedelta(days=30)
    granularity = args.get("granularity") or "day"
    usage.check_range(start, end, granularity)
    return start, end, granularity


def _usage_page(template: str, session, **context):
    try:
        start, end, granularity = _usage_query()
    except ValueError:
        return render_page(template, items=[], error="Dates are YYYY-MM-DD.", args=request.args, **context), 400
    items = usage.report(session, start=start, end=end, granularity=granularity)
    if request.args.get("format") == "csv":
        return Response(usage.to_csv(items), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="usage-{start}-{end}.csv"'})
    return render_page(template, items=items, args=request.args, start=start, end=end,
                       granularity=granularity, **context)


@bp.get("/usage")
@login_required(*TENANT_USERS)
def own_usage():
    identity, session = current_identity(), request_session()
    plan = plan_for(_settings(), tenancy.get_tenant(identity.tenant_id).plan)
    return _usage_page("usage.html", session, title="Usage", quotas=quotas.standing(session, plan))


# -- operators ------------------------------------------------------------------------------


@bp.get("/admin/usage")
@login_required(*OPERATORS)
def all_usage():
    with system_session() as session:
        return _usage_page("usage.html", session, title="Usage of every tenant", quotas=None)



@bp.get("/admin/tenants")
@login_required(*OPERATORS)
def tenants():
    return render_page("tenants.html", title="Tenants", tenants=tenancy.list_tenants())


@bp.post("/admin/tenants/<tenant_id>")
@login_required(*OPERATORS)
def update_tenant(tenant_id: str):
    form = request.form
    try:
        weight = int(form["weight"]) if form.get("weight") else None
        changes = tenancy.TenantChanges(weight=weight, plan=form.get("plan") or None,
                                        paused=form.get("paused") == "on")
        tenancy.update_tenant(tenant_id, changes)
    except ValueError:
        return render_page("tenants.html", title="Tenants", tenants=tenancy.list_tenants(),
                           error="The weight is a whole number."), 400
    except ServiceError as exc:
        if exc.status == 404:
            raise
        return render_page("tenants.html", title="Tenants", tenants=tenancy.list_tenants(),
                           error=exc.detail), exc.status
    return redirect(url_for("web.tenants"))


#: The window the fair-share page measures worker time over.
SHARE_WINDOW = timedelta(minutes=5)


@bp.get("/admin/fair-share")
@login_required(*OPERATORS)
def fair_share():
    part = request.args.get("part") == "live"
    return render_page("_fair_share.html" if part else "fair_share.html", title="Fair share",
                       tenants=stats.fair_share(get_db(), window=SHARE_WINDOW), window=SHARE_WINDOW)


def _dead_filter() -> dlq.DeadFilter:
    values = request.values
    ids = tuple(int(v) for v in values.getlist("job_id") if v.isdigit())
    return dlq.DeadFilter(tenant_id=values.get("tenant") or None, kind=values.get("kind") or None, job_ids=ids)


@bp.get("/admin/dlq")
@login_required(*OPERATORS)
def dead_letters():
    selection = _dead_filter()
    return render_page("dlq.html", title="Dead letters", selection=selection,
                       jobs=dlq.list_dead(selection, after=request.args.get("after", type=int), limit=PAGE))


@bp.post("/admin/dlq/<action>")
@login_required(*OPERATORS)
def dead_letter_action(action: str):
    if action not in ("replay", "purge"):
        return render_page("message.html", title="Not found", message="No such action."), 404
    from app.tasks import broker

    selection = _dead_filter()
    try:
        if action == "replay":
            done = dlq.replay(selection, broker=broker, settings=_settings())
        else:
            done = dlq.purge(selection, broker=broker)
    except ServiceError as exc:
        return render_page("dlq.html", title="Dead letters", selection=selection, error=exc.detail,
                           jobs=dlq.list_dead(selection, limit=PAGE)), exc.status
    verb = "replayed" if action == "replay" else "purged"
    return render_page("dlq.html", title="Dead letters", selection=dlq.DeadFilter(),
                       notice=f"{len(done)} job(s) {verb}.", jobs=dlq.list_dead(dlq.DeadFilter(), limit=PAGE))
