"""Password hashing (bcrypt) and the password policy."""
from __future__ import annotations

import functools

import bcrypt

from app.errors import Invalid

__all__ = ["hash_password", "verify_password", "check_password", "normalise_email", "burn_time"]

#: bcrypt reads at most this many bytes of a password.
BCRYPT_MAX_BYTES = 72


def normalise_email(email: str) -> str:
    """Emails are compared trimmed and lower-cased."""
    return email.strip().lower()


def check_password(password: str, *, min_length: int) -> None:
    """Raises: Invalid: the password is too short or too long for bcrypt (names the field)."""
    if len(password) < min_length:
        raise Invalid(
            f"password must be at least {min_length} characters",
            errors=[{"field": "password", "message": f"at least {min_length} characters"}],
        )
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise Invalid(
            f"password must be at most {BCRYPT_MAX_BYTES} bytes",
            errors=[{"field": "password", "message": f"at most {BCRYPT_MAX_BYTES} bytes"}],
        )


def hash_password(password: str, *, rounds: int) -> str:
    """A bcrypt hash of ``password`` with cost ``rounds``."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed`` (``False`` for an unusable hash)."""
    try:
        return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], hashed.encode())
    except ValueError:
        return False


@functools.lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> str:
    return hash_password("not a real password", rounds=rounds)


def burn_time(password: str, *, rounds: int) -> None:
    """Spend as long as a real check, so an unknown email answers no faster than a wrong password."""
    verify_password(password, _dummy_hash(rounds))
