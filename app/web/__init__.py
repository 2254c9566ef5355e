"""The web dashboard: server-rendered pages under ``/ui`` on the API's own app and auth.

Logging in puts the same JWTs the API hands out into cookies (flask-jwt-extended's
cookie mode): HttpOnly, ``SameSite=Lax``, ``Secure`` unless ``FAIRQ_COOKIE_SECURE`` is off,
scoped to ``/ui``. Every form post carries the token's CSRF value (double submit, checked
by flask-jwt-extended); the login and registration forms, which come before any token,
carry a value from a cookie of their own. Pages read and change data only through the
same services as the API, in a session scoped to the caller's tenant.
"""
from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, g, redirect, request, url_for
from flask_jwt_extended import create_access_token, get_jwt, set_access_cookies, verify_jwt_in_request
from flask_jwt_extended.exceptions import CSRFError, JWTExtendedException
from jwt import PyJWTError

from app.settings import Settings

__all__ = ["bp", "init_app", "page_for", "login_required", "csrf_field_value", "LOGIN_CSRF_COOKIE"]

bp = Blueprint("web", __name__, url_prefix="/ui", template_folder="templates", static_folder="static")

#: The cookie that carries the login and registration forms' CSRF value.
LOGIN_CSRF_COOKIE = "fairq_form_csrf"


def init_app(app: Flask, settings: Settings) -> None:
    """Cookie settings for the dashboard's tokens, and the blueprint."""
    app.config.update(
        JWT_ACCESS_COOKIE_PATH="/ui",
        JWT_REFRESH_COOKIE_PATH="/ui",
        JWT_COOKIE_SECURE=settings.cookie_secure,
        JWT_COOKIE_SAMESITE="Lax",
        JWT_COOKIE_CSRF_PROTECT=True,
        JWT_CSRF_CHECK_FORM=True,
        JWT_CSRF_IN_COOKIES=False,  # forms carry the value from the token's claims
    )
    from app.web import campaigns, reconcile, views  # noqa: F401  (the pages register themselves on bp)

    app.register_blueprint(bp)


def page_for(identity) -> str:
    """Where a user lands after logging in."""
    return url_for("web.fair_share" if identity.is_operator else "web.jobs")


def _safe_next(target: str | None) -> str | None:
    """A same-site path to go back to after logging in (never another host)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/ui") or target.startswith("//"):
        return None
    return target


def _to_login() -> Response:
    return redirect(url_for("web.login", next=request.full_path if request.method == "GET" else None))


def _verify() -> Response | None:
    """Verify the access cookie, or renew it from the refresh cookie; a redirect if neither."""
    try:
        verify_jwt_in_request(locations=["cookies"])
        return None
    except CSRFError:
        from app.web.views import render_page

        return render_page("message.html", title="This form has expired",
                           message="Reload the page and send it again."), 400
    except (JWTExtendedException, PyJWTError):
        pass
    if request.method != "GET":
        return _to_login()  # a form of an expired page: its CSRF value was the old token's
    try:
        verify_jwt_in_request(locations=["cookies"], refresh=True)
    except (JWTExtendedException, PyJWTError):
        return _to_login()
    claims = get_jwt()
    g.renewed_access_token = create_access_token(
        claims["sub"], additional_claims={"tenant": claims["tenant"], "role": claims["role"]}
    )
    return None


def login_required(*roles: str) -> Callable:
    """Decorator: a logged-in user with one of ``roles``; others get a login page or 403."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            denied = _verify()
            if denied is not None:
                return denied
            from app.tenancy.identity import current_identity

            if current_identity().role not in roles:
                from app.web.views import render_page

                return render_page("message.html", title="Not for this account",
                                   message="Your account cannot open this page."), 403
            return view(*args, **kwargs)

        return wrapper

    return decorate


@bp.after_app_request
def _renew(response: Response) -> Response:
    token = g.pop("renewed_access_token", None)
    if token is not None:
        set_access_cookies(response, token)
    return response


def csrf_field_value() -> str:
    """The CSRF value forms of a logged-in page carry (from the access token's claims)."""
    if "renewed_access_token" in g:
        from flask_jwt_extended import get_csrf_token

        return get_csrf_token(g.renewed_access_token)
    return get_jwt().get("csrf", "")


def form_csrf() -> str:
    """The login / registration forms' CSRF value: this browser's cookie, made if missing."""
    value = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not value:
        value = g.setdefault("new_form_csrf", secrets.token_urlsafe(32))
    return value


def check_form_csrf() -> bool:
    cookie, sent = request.cookies.get(LOGIN_CSRF_COOKIE, ""), request.form.get("csrf_token", "")
    return bool(cookie) and hmac.compare_digest(cookie, sent)


@bp.after_request
def _form_csrf_cookie(response: Response) -> Response:
    value = g.pop("new_form_csrf", None)
    if value is not None:
        response.set_cookie(LOGIN_CSRF_COOKIE, value, path="/ui", httponly=True, samesite="Strict",
                            secure=current_app.config["JWT_COOKIE_SECURE"])
    return response
