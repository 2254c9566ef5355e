"""A tenant's users: ``/users`` (admins of the tenant)."""
from __future__ import annotations

from apiflask import APIBlueprint

from app.api.auth import UserOut
from app.api.guards import admin_required
from app.api.pagination import PageIn, page, page_of
from app.errors import Forbidden
from app.tenancy import service
from app.tenancy.identity import current_identity

bp = APIBlueprint("users", __name__, tag="Users")


UserPage = page_of(UserOut, "User")


@bp.get("/users")
@admin_required
@bp.input(PageIn, location="query", arg_name="query")
@bp.output(UserPage)
@bp.doc(summary="List your tenant's users", security="BearerAuth")
def list_users(query):
    users = service.list_users(current_identity().tenant_id, after=query.get("after"), limit=query["limit"])
    return page(users, limit=query["limit"])


@bp.get("/users/<int:user_id>")
@admin_required
@bp.output(UserOut)
@bp.doc(summary="One of your tenant's users", security="BearerAuth", responses={404: "No such user"})
def get_user(user_id: int):
    return service.get_user(current_identity().tenant_id, user_id)


@bp.post("/users/<int:user_id>/disable")
@admin_required
@bp.output(UserOut)
@bp.doc(summary="Disable a user: their tokens stop working at once", security="BearerAuth")
def disable_user(user_id: int):
    identity = current_identity()
    if user_id == identity.user_id:
        raise Forbidden("you cannot disable yourself", slug="cannot-disable-self")
    return service.set_user_disabled(identity.tenant_id, user_id, True)


@bp.post("/users/<int:user_id>/enable")
@admin_required
@bp.output(UserOut)
@bp.doc(summary="Enable a disabled user", security="BearerAuth")
def enable_user(user_id: int):
    return service.set_user_disabled(current_identity().tenant_id, user_id, False)
