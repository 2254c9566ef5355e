"""Sign-up, log-in and tokens: ``/register``, ``/login``, ``/refresh``, ``/logout``, ``/me``."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from marshmallow import pre_load
from apiflask.fields import Boolean, DateTime, Email, Integer, String
from apiflask.validators import Length, OneOf
from flask import current_app, request
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt, jwt_required

from app.tenancy import service
from app.tenancy.identity import Identity, current_identity, optional_identity
from app.tenancy.login_limits import LoginLimits
from app.tenancy.models import TENANT_ROLES
from app.tenancy.tokens import expires_at

bp = APIBlueprint("auth", __name__, tag="Auth")


class RegisterIn(Schema):
    tenant_id = String(required=True, validate=Length(min=2, max=64))
    email = Email(required=True, validate=Length(max=320))
    password = String(required=True, validate=Length(max=1024), load_only=True)
    role = String(validate=OneOf(TENANT_ROLES), metadata={"description": "for invitations; default member"})

    @pre_load
    def _trim_email(self, data, **_kwargs):
        """Emails are trimmed before they are checked (and lower-cased by the service)."""
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            data = {**data, "email": data["email"].strip()}
        return data


class LoginIn(Schema):
    tenant_id = String(required=True, validate=Length(min=2, max=64))
    email = String(required=True, validate=Length(max=320))
    password = String(required=True, validate=Length(max=1024), load_only=True)


class UserOut(Schema):
    id = Integer()
    tenant_id = String()
    email = String()
    role = String()
    disabled = Boolean()
    created_at = DateTime()


class TokensOut(Schema):
    access_token = String()
    refresh_token = String()
    token_type = String()
    expires_in = Integer(metadata={"description": "seconds until the access token expires"})


class AccessOut(Schema):
    access_token = String()
    token_type = String()
    expires_in = Integer()


def _settings():
    return current_app.config["FAIRQ_SETTINGS"]


def _limits() -> LoginLimits:
    return current_app.extensions["fairq.login_limits"]


def _access_token(identity: Identity) -> dict:
    settings = _settings()
    return {
        "access_token": create_access_token(str(identity.user_id), additional_claims=identity.claims()),
        "token_type": "Bearer",
        "expires_in": settings.access_token_minutes * 60,
    }


@bp.post("/register")
@bp.input(RegisterIn, arg_name="body")
@bp.output(UserOut, status_code=201)
@bp.doc(
    summary="Register a user",
    description=(
        "A new tenant id creates the tenant with you as its admin (self-service sign-up). "
        "Joining an existing tenant needs the bearer token of one of its admins."
    ),
    responses={403: "Invitation required or tenant mismatch", 409: "Email already registered"},
)
def register(body):
    user = service.register(
        _settings(),
        tenant_id=body["tenant_id"],
        email=body["email"],
        password=body["password"],
        role=body.get("role"),
        inviter=optional_identity(),
    )
    return user


@bp.post("/login")
@bp.input(LoginIn, arg_name="body")
@bp.output(TokensOut)
@bp.doc(summary="Log in", responses={401: "Wrong credentials", 429: "Too many failed logins"})
def login(body):
    identity = service.log_in(_settings(), _limits(), tenant_id=body["tenant_id"], email=body["email"],
                              password=body["password"], address=request.remote_addr or "unknown")
    tokens = _access_token(identity)
    tokens["refresh_token"] = create_refresh_token(str(identity.user_id), additional_claims=identity.claims())
    return tokens


@bp.post("/refresh")
@jwt_required(refresh=True)
@bp.output(AccessOut)
@bp.doc(summary="A new access token for a refresh token", security="BearerAuth")
def refresh():
    return _access_token(current_identity())


@bp.post("/logout")
@jwt_required(verify_type=False)
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke the token sent (access or refresh)", security="BearerAuth")
def logout():
    claims = get_jwt()
    identity = current_identity()
    current_app.extensions["fairq.revocations"].revoke(
        jti=claims["jti"], tenant_id=identity.tenant_id, user_id=identity.user_id, expires_at=expires_at(claims)
    )
    return ""


@bp.get("/me")
@jwt_required()
@bp.output(UserOut)
@bp.doc(summary="The user of the token", security="BearerAuth")
def me():
    identity = current_identity()
    return service.get_user(identity.tenant_id, identity.user_id)
