"""The dashboard's campaign pages: create, list, one campaign live (counts and log), cancel."""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from flask import redirect, request, url_for

from app.campaigns import service
from app.errors import Invalid, ServiceError
from app.tenancy.identity import request_session
from app.web import bp, login_required
from app.web.views import PAGE, TENANT_USERS, _older, _settings, render_page

#: Processing-log entries shown on a campaign's page.
LOG_SHOWN = 50


def _channel_names() -> list[str]:
    return sorted(name for name, channel in service.installed_channels().items() if channel.deliver is not None)


def parse_recipients(text: str) -> list[dict] | None:
    """The recipients typed in the form: a JSON array of objects, or CSV whose first line names
    the fields (one recipient a line after it); ``None`` for nothing (one delivery, no audience).

    Raises:
      Invalid: JSON that does not parse, or CSV with a header only.
    """
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise Invalid(f"recipients: not valid JSON ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
    rows = [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader if any(row.values())]
    if not rows:
        raise Invalid("recipients: the first line names the fields, then one recipient a line")
    return rows


def _send_at(text: str) -> datetime | None:
    """The form's ``send_at`` (a local date and time input), taken as UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid("send_at is a date and time (YYYY-MM-DDTHH:MM, UTC)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _new_campaign(form) -> service.NewCampaign:
    name = form.get("name", "").strip()
    if not name:
        raise Invalid("name: give the campaign a name")
    return service.NewCampaign(
        name=name, description=form.get("description") or None, channel=form.get("channel") or "log",
        message=form.get("message") or None, recipients=parse_recipients(form.get("recipients", "")),
        send_at=_send_at(form.get("send_at", "")),
    )


@bp.get("/campaigns")
@login_required(*TENANT_USERS)
def campaigns():
    items = service.list_campaigns(request_session(), after=request.args.get("after", type=int), limit=PAGE)
    return render_page("campaigns.html", title="Campaigns", campaigns=items, more=_older("web.campaigns", items))


@bp.route("/campaigns/new", methods=["GET", "POST"])
@login_required(*TENANT_USERS)
def new_campaign():
    context = {"title": "New campaign", "channels": _channel_names()}
    if request.method == "GET":
        return render_page("campaign_new.html", form={}, **context)
    form = request.form
    session = request_session()
    try:
        campaign = service.create_campaign(session, _settings(), _new_campaign(form))
        session.commit()
    except ServiceError as exc:
        session.rollback()
        return render_page("campaign_new.html", form=form, error=exc.detail, **context), exc.status
    return redirect(url_for("web.campaign", campaign_id=campaign.id))


def _campaign_page(template: str, campaign_id: int, **context):
    session = request_session()
    campaign = service.get_campaign(session, campaign_id)
    open_ = service.can_cancel(campaign)  # else it has ended for good: the page stops refreshing
    return render_page(template, title=f"Campaign {campaign_id}: {campaign.name}", campaign=campaign,
                       counts=service.counts(session, campaign), can_cancel=open_, final=not open_,
                       log=service.processing_log(session, campaign_id, limit=LOG_SHOWN), **context)


@bp.get("/campaigns/<int:campaign_id>")
@login_required(*TENANT_USERS)
def campaign(campaign_id: int):
    """A campaign's counts and processing log; ``part=live``: the part that refreshes itself."""
    live = request.args.get("part") == "live"
    return _campaign_page("_campaign_detail.html" if live else "campaign.html", campaign_id)


@bp.post("/campaigns/<int:campaign_id>/cancel")
@login_required(*TENANT_USERS)
def cancel_campaign(campaign_id: int):
    session = request_session()
    try:
        service.cancel_campaign(session, campaign_id)
        session.commit()
    except ServiceError as exc:
        if exc.status == 404:
            raise
        session.rollback()
        return _campaign_page("campaign.html", campaign_id, error=exc.detail), exc.status
    return redirect(url_for("web.campaign", campaign_id=campaign_id))
