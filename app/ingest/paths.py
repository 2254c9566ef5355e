"""Where a tenant's files live in the object store, and which paths a tenant may name.

Every path a tenant gives (``s3_path``) is relative to its own prefix,
``tenants/<tenant>/``. :func:`object_key` turns it into a key of the store, or
refuses it before anything is read: a URL, another bucket, an absolute path, a
``..`` segment (encoded or not) or control characters answer 400, another
tenant's prefix 403. Uploads get keys of their own under ``uploads/``.
"""
from __future__ import annotations

import re
import uuid
from urllib.parse import unquote

from werkzeug.utils import secure_filename

from app.errors import Forbidden, Invalid
from app.storage import check_key

__all__ = ["tenant_prefix", "object_key", "relative_path", "upload_path", "MAX_PATH_LENGTH"]

#: The longest path a tenant may give (S3 keys stop at 1,024 bytes, the prefix included).
MAX_PATH_LENGTH = 900
#: Longest file name kept in an upload's key.
MAX_NAME_LENGTH = 100
#: ``s3:``, ``http:``, ``file:``, ``C:`` ...: a scheme or a drive, never a relative path.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: Control characters, which no key of ours holds.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def tenant_prefix(tenant_id: str) -> str:
    """The folder of the store every object of ``tenant_id`` lives under."""
    return f"tenants/{tenant_id}/"


def _invalid(detail: str) -> Invalid:
    return Invalid(detail, slug="invalid-path", errors=[{"field": "s3_path", "message": detail}])


def relative_path(tenant_id: str, s3_path: str) -> str:
    """``s3_path`` checked, as a path relative to the tenant's prefix.

    A path that starts with the tenant's own full prefix (``tenants/<tenant>/...``)
    is taken as that path below it.

    Raises:
      Invalid: not a plain relative path (400, type ``/problems/invalid-path``).
      Forbidden: under another tenant's prefix (403, type ``/problems/forbidden-path``).
    """
    path = s3_path or ""
    if not path.strip():
        raise _invalid("s3_path is empty")
    if len(path) > MAX_PATH_LENGTH:
        raise _invalid(f"s3_path is longer than {MAX_PATH_LENGTH} characters")
    if "://" in path or _SCHEME.match(path):
        raise _invalid("s3_path must be a path relative to your tenant's folder, not a URL or another bucket")
    if path.startswith(("/", "~")) or "\\" in path or _CONTROL.search(path):
        raise _invalid("s3_path must be a relative path without '\\' or control characters")
    for form in {path, unquote(path)}:
        if any(part in {"", ".", ".."} for part in form.split("/")):
            raise _invalid("s3_path must not hold '.', '..' or empty segments")
    own = tenant_prefix(tenant_id)
    if path.startswith(own):
        path = path[len(own):]
    elif path.startswith("tenants/"):
        raise Forbidden("s3_path names another tenant's folder", slug="forbidden-path")
    return check_key(path)


def object_key(tenant_id: str, s3_path: str) -> str:
    """The store key of a tenant's relative path. Raises: as :func:`relative_path`."""
    return tenant_prefix(tenant_id) + relative_path(tenant_id, s3_path)


def upload_path(filename: str | None) -> str:
    """A new path (relative to the tenant's prefix) for an uploaded file: ``uploads/<uuid>-<safe name>``."""
    name = secure_filename((filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = name.lstrip(".")[-MAX_NAME_LENGTH:] or "upload.csv"
    return f"uploads/{uuid.uuid4().hex}-{name}"
