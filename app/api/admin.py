"""Operator endpoints: ``/admin/*`` (platform operators only)."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, Range

from app.api.guards import operator_required
from app.tenancy import service

bp = APIBlueprint("admin", __name__, url_prefix="/admin", tag="Admin")




class TenantOut(Schema):
    id = String()
    name = String()
    weight = Integer()
    plan = String()
    paused = Boolean()
    created_at = DateTime()


class TenantItem(TenantOut):
    """A tenant in a list (its own class: APIFlask registers a schema used both nested and
    directly twice, as "TenantOut" and "TenantOut1")."""


class TenantList(Schema):
    items = List(Nested(TenantItem))


class TenantPatch(Schema):
    name = String(validate=Length(min=1, max=200))
    weight = Integer(validate=Range(min=1, max=1_000_000))
    plan = String(validate=Length(min=1, max=64))
    paused = Boolean()


@bp.get("/tenants/<tenant_id>")
@operator_required
@bp.output(TenantOut)
@bp.doc(summary="One tenant", security="BearerAuth", responses={404: "No such tenant"})
def get_tenant(tenant_id: str):
    return service.get_tenant(tenant_id)


@bp.get("/tenants")
@operator_required
@bp.output(TenantList)
@bp.doc(summary="Every tenant", security="BearerAuth")
def list_tenants():
    return {"items": service.list_tenants()}


@bp.patch("/tenants/<tenant_id>")
@operator_required
@bp.input(TenantPatch, arg_name="body")
@bp.output(TenantOut)
@bp.doc(summary="Change a tenant's weight, plan, name or pause", security="BearerAuth")
def update_tenant(tenant_id: str, body):
    return service.update_tenant(tenant_id, service.TenantChanges(**body))
