"""Campaigns: ``/campaigns`` (create, list), ``/campaigns/{id}`` (status, counts, processing
log), ``/campaigns/{id}/log``, ``/campaigns/{id}/cancel``; the tenant's webhook
(``/settings/webhook``) and the operators' allow-list of private hosts."""
from __future__ import annotations

from datetime import UTC

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Method, Nested, String
from apiflask.validators import Length, OneOf
from flask import current_app, url_for

from app.api.guards import admin_required, operator_required, tenant_user_required
from app.api.jobs import idempotency_key
from app.api.pagination import PageIn, page, page_of
from app.campaigns import service, webhooks
from app.campaigns.models import CAMPAIGN_STATUSES
from app.tenancy.identity import current_identity, request_session
from app.tenancy.service import require_same_tenant

bp = APIBlueprint("campaigns", __name__, tag="Campaigns")


class CampaignIn(Schema):
    tenant_id = String(validate=Length(min=1, max=64), metadata={"description": "must be your token's"})
    name = String(required=True, validate=Length(min=1, max=200))
    description = String(validate=Length(max=10_000), allow_none=True)
    channel = String(load_default="log", validate=Length(min=1, max=32),
                     metadata={"description": "an installed channel: log (default) or webhook"})
    message = String(validate=Length(min=1, max=10_000),
                     metadata={"description": "template with {field}s of the audience row (default: the name)"})
    recipients = List(Dict(), metadata={"description": "an inline audience: one object per recipient"})
    audience_s3_path = String(validate=Length(min=1, max=1024),
                              metadata={"description": "a CSV audience with a header, relative to your folder"})
    send_at = DateTime(metadata={"description": "start no earlier than this (ISO time; UTC if no offset)"})
    schedule = String(validate=Length(min=1, max=120),
                      metadata={"description": "recur on this cron expression (UTC), e.g. '0 9 * * 1'"})


class CampaignOut(Schema):
    id = Integer()
    tenant_id = String()
    name = String()
    description = String(allow_none=True)
    status = String(metadata={"enum": list(CAMPAIGN_STATUSES)})
    created_at = DateTime()
    job_id = Integer(allow_none=True, metadata={"description": "the job that runs it (its campaign.created event)"})
    channel = String()
    message = String(allow_none=True)
    audience = Method("_audience")
    send_at = DateTime(allow_none=True)
    schedule = String(allow_none=True)
    next_run_at = DateTime(allow_none=True)
    run = Integer(metadata={"description": "runs started so far"})
    started_at = DateTime(allow_none=True)
    finished_at = DateTime(allow_none=True)
    last_error = String(allow_none=True)

    def _audience(self, campaign) -> dict | None:
        if not campaign.audience:
            return None
        if "recipients" in campaign.audience:
            return {"recipients": len(campaign.audience["recipients"])}
        return {"s3_path": campaign.audience.get("s3_path")}


class LogEntryOut(Schema):
    id = Integer()
    status = String(metadata={"enum": ["success", "retry", "failed"]})
    run = Integer()
    recipient = Integer()
    attempts = Integer()
    last_error = String(allow_none=True)
    processed_at = DateTime(allow_none=True)
    payload = Dict(allow_none=True)


class CountsOut(Schema):
    recipients = Integer()
    delivered = Integer()
    failed = Integer()
    retrying = Integer()


class CampaignDetail(CampaignOut):
    counts = Nested(CountsOut)
    log = List(Nested(LogEntryOut), metadata={"description": "the newest processing-log entries"})
    log_next = Integer(allow_none=True, metadata={"description": "`after` for GET /campaigns/{id}/log"})


CampaignPage = page_of(CampaignOut, "Campaign")
LogPage = page_of(LogEntryOut, "LogEntry")


class CampaignQuery(PageIn):
    status = String(validate=OneOf(CAMPAIGN_STATUSES))


class WebhookIn(Schema):
    url = String(required=True, validate=Length(min=1, max=2048))


class WebhookOut(Schema):
    url = String(allow_none=True)
    secret_hint = String(allow_none=True, metadata={"description": "the secret's last four characters"})
    secret = String(metadata={"description": "the whole signing secret: only in the answer that made it"})
    allowed_hosts = List(String(), metadata={"description": "private hosts an operator allowed"})
    configured = Boolean()


class AllowedHostsIn(Schema):
    allowed_hosts = List(String(validate=Length(min=1, max=253)), required=True)


class AllowedHostsOut(Schema):
    tenant_id = String()
    allowed_hosts = List(String())


#: Processing-log entries shown with a campaign.
LOG_PREVIEW = 50


def _settings():
    return current_app.config["FAIRQ_SETTINGS"]


def _utc(value):
    """An ISO time from a request in UTC (one with no offset is taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@bp.post("/campaigns")
@tenant_user_required
@bp.input(CampaignIn, arg_name="body")
@bp.output(CampaignOut, status_code=201)
@bp.doc(
    summary="Create a campaign",
    description="The campaign and the job that runs it (its `campaign.created` event) are written in one "
                "transaction. Audience: `recipients` or `audience_s3_path` (none: one delivery). `send_at` "
                "starts it later; `schedule` (cron) makes it recur. Send an `Idempotency-Key` header to make "
                "retries safe: the same key returns the same campaign (200), never a second one.",
    security="BearerAuth",
    responses={400: "Unknown channel, a template field the audience lacks, bad audience or schedule",
               403: "Another tenant's id or folder", 429: "Over a quota of the plan"},
)
def create_campaign(body):
    require_same_tenant(current_identity(), body.pop("tenant_id", None))
    body["send_at"] = _utc(body.get("send_at"))
    session = request_session()
    campaign, created = service.create_campaign_once(session, _settings(), service.NewCampaign(**body),
                                                     idempotency_key=idempotency_key())
    session.commit()
    location = url_for("campaigns.get_campaign", campaign_id=campaign.id)
    return campaign, 201 if created else 200, {"Location": location}


@bp.get("/campaigns")
@tenant_user_required
@bp.input(CampaignQuery, location="query", arg_name="query")
@bp.output(CampaignPage)
@bp.doc(summary="Your tenant's campaigns, newest first (keyset pages)", security="BearerAuth")
def list_campaigns(query):
    items = service.list_campaigns(request_session(), status=query.get("status"), after=query.get("after"),
                                   limit=query["limit"])
    return page(items, limit=query["limit"])


@bp.get("/campaigns/<int:campaign_id>")
@tenant_user_required
@bp.output(CampaignDetail)
@bp.doc(summary="One campaign: status, counts of its current run and the newest processing-log entries",
        security="BearerAuth", responses={404: "No such campaign"})
def get_campaign(campaign_id: int):
    session = request_session()
    campaign = service.get_campaign(session, campaign_id)
    log = service.processing_log(session, campaign_id, limit=LOG_PREVIEW)
    return _Detail(campaign, counts=service.counts(session, campaign), log=log,
                   log_next=log[-1].id if len(log) == LOG_PREVIEW else None)


class _Detail:
    """A campaign with its counts and log, as ``CampaignDetail`` serialises it."""

    def __init__(self, campaign, **extra) -> None:
        self._campaign = campaign
        self.__dict__.update(extra)

    def __getattr__(self, name: str):
        return getattr(self._campaign, name)


@bp.get("/campaigns/<int:campaign_id>/log")
@tenant_user_required
@bp.input(PageIn, location="query", arg_name="query")
@bp.output(LogPage)
@bp.doc(summary="A campaign's processing log, newest first: one entry per attempt outcome",
        security="BearerAuth", responses={404: "No such campaign"})
def campaign_log(campaign_id: int, query):
    items = service.processing_log(request_session(), campaign_id, after=query.get("after"), limit=query["limit"])
    return page(items, limit=query["limit"])


@bp.post("/campaigns/<int:campaign_id>/cancel")
@tenant_user_required
@bp.output(CampaignOut)
@bp.doc(summary="Cancel a campaign", description="Its deliveries not yet sent never go out; a recurring "
        "campaign runs no more.", security="BearerAuth", responses={404: "No such campaign", 409: "Already ended"})
def cancel_campaign(campaign_id: int):
    session = request_session()
    campaign = service.cancel_campaign(session, campaign_id)
    session.commit()
    return campaign


def _webhook_out(view: webhooks.WebhookView) -> dict:
    out = {"url": view.url, "secret_hint": view.secret_hint, "allowed_hosts": view.allowed_hosts,
           "configured": bool(view.url)}
    if view.secret:
        out["secret"] = view.secret
    return out


@bp.get("/settings/webhook")
@tenant_user_required
@bp.output(WebhookOut)
@bp.doc(summary="Your tenant's webhook (the secret's last four characters only)", security="BearerAuth")
def get_webhook():
    return _webhook_out(webhooks.get_webhook(request_session()))


@bp.put("/settings/webhook")
@admin_required
@bp.input(WebhookIn, arg_name="body")
@bp.output(WebhookOut)
@bp.doc(summary="Set your tenant's webhook URL (admins)",
        description="The first time, the answer holds the signing `secret`, shown this once. The host must "
                    "resolve to public addresses unless an operator allowed it.",
        security="BearerAuth", responses={400: "A bad URL, or a destination that is not public"})
def put_webhook(body):
    session = request_session()
    view = webhooks.set_webhook_url(session, body["url"])
    session.commit()
    return _webhook_out(view)


@bp.post("/settings/webhook/secret")
@admin_required
@bp.output(WebhookOut)
@bp.doc(summary="Rotate your webhook's signing secret (admins); the answer shows the new one once",
        security="BearerAuth", responses={400: "No webhook URL yet"})
def rotate_webhook_secret():
    session = request_session()
    view = webhooks.rotate_secret(session)
    session.commit()
    return _webhook_out(view)


@bp.get("/admin/tenants/<tenant_id>/webhook-hosts")
@operator_required
@bp.output(AllowedHostsOut)
@bp.doc(summary="Private hosts a tenant's webhook may reach (operators)", security="BearerAuth", tags=["Admin"],
        responses={404: "No such tenant"})
def get_allowed_hosts(tenant_id: str):
    return {"tenant_id": tenant_id, "allowed_hosts": webhooks.allowed_hosts(tenant_id)}


@bp.put("/admin/tenants/<tenant_id>/webhook-hosts")
@operator_required
@bp.input(AllowedHostsIn, arg_name="body")
@bp.output(AllowedHostsOut)
@bp.doc(summary="Allow a tenant's webhook to reach these private hosts, addresses or networks (operators)",
        security="BearerAuth", tags=["Admin"], responses={400: "A bad entry", 404: "No such tenant"})
def put_allowed_hosts(tenant_id: str, body):
    return {"tenant_id": tenant_id, "allowed_hosts": webhooks.set_allowed_hosts(tenant_id, body["allowed_hosts"])}
