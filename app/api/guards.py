"""Who may call a view: a verified token of a given role."""
from __future__ import annotations

import functools
from collections.abc import Callable

from flask_jwt_extended import verify_jwt_in_request

from app.errors import Forbidden
from app.tenancy.identity import current_identity

__all__ = ["roles_required", "operator_required", "admin_required", "tenant_user_required"]


def roles_required(*roles: str) -> Callable:
    """Decorator: a valid access token whose role is one of ``roles`` (401 without, 403 with another)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            verify_jwt_in_request()
            role = current_identity().role
            if role not in roles:
                raise Forbidden(f"this needs the role {' or '.join(roles)}", slug="role-required")
            return view(*args, **kwargs)

        return wrapper

    return decorate


#: Platform operators only (every ``/admin/*`` view).
operator_required = roles_required("operator")
#: An admin of the caller's tenant.
admin_required = roles_required("admin")
#: Any user of a tenant (operators have no tenant data of their own).
tenant_user_required = roles_required("admin", "member")
