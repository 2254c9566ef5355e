"""A campaign's audience: an inline list of recipients, or a CSV file under the tenant's folder.

The CSV is streamed from the object store (never read whole); its header names the
fields a message template may use. A campaign with no audience has one delivery,
with an empty row.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import islice
from typing import Any

from app.errors import Invalid
from app.ingest.paths import object_key, relative_path
from app.settings import Settings
from app.storage import ObjectNotFound, opened

__all__ = ["check_recipients", "audience_path", "csv_fields", "rows"]

#: Types a recipient's value may have in an inline list.
_SCALARS = (str, int, float, bool, type(None))


def check_recipients(recipients: list[Any]) -> list[dict[str, Any]]:
    """An inline audience, checked: a non-empty list of objects of scalar values.

    Raises:
      Invalid: naming the first bad recipient.
    """
    if not recipients:
        raise Invalid("recipients is empty", errors=[{"field": "recipients", "message": "at least one"}])
    for index, recipient in enumerate(recipients):
        if not isinstance(recipient, dict) or not all(
            isinstance(k, str) and isinstance(v, _SCALARS) for k, v in recipient.items()
        ):
            raise Invalid(f"recipients[{index}] must be an object of text, numbers or booleans",
                          errors=[{"field": f"recipients[{index}]", "message": "an object of scalar values"}])
    return recipients


def audience_path(tenant_id: str, s3_path: str) -> str:
    """The audience file's path relative to the tenant's folder. Raises: as ``paths.relative_path``."""
    return relative_path(tenant_id, s3_path)


def _reader(stream) -> csv.DictReader:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text)
    if reader.fieldnames:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
    return reader


def csv_fields(settings: Settings, tenant_id: str, s3_path: str) -> list[str]:
    """The column names of an audience file (only its header is read).

    Raises:
      Invalid: no such file (``audience-not-found``), or no header.
    """
    try:
        with opened(settings, object_key(tenant_id, s3_path)) as stream:
            fields = _reader(stream).fieldnames or []
    except ObjectNotFound:
        raise Invalid(f"audience_s3_path {s3_path!r} not found in your tenant's folder", slug="audience-not-found",
                      errors=[{"field": "audience_s3_path", "message": "not found"}]) from None
    except UnicodeDecodeError:
        fields = []
    if not fields:
        raise Invalid("the audience file has no header row", slug="invalid-audience",
                      errors=[{"field": "audience_s3_path", "message": "a CSV file with a header row"}])
    return fields


def rows(settings: Settings, tenant_id: str, audience: dict[str, Any] | None, *, start: int = 0) -> Iterator[dict]:
    """The audience's rows from position ``start`` on, streamed.

    Raises:
      ObjectNotFound: the audience file is gone.
    """
    if not audience:
        yield from islice([{}], start, None)
        return
    if "recipients" in audience:
        yield from islice(audience["recipients"], start, None)
        return
    with opened(settings, object_key(tenant_id, audience["s3_path"])) as stream:
        records = (row for row in _reader(stream) if any((v or "").strip() for v in row.values() if isinstance(v, str)))
        for row in islice(records, start, None):
            yield {k: v for k, v in row.items() if k is not None}
