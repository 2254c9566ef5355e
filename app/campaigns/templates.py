"""Message templates: ``{name}``-style fields filled from a recipient's audience row.

Only plain field names are allowed (no ``{a.b}``, ``{a[0]}``, conversions or format
specs), so a template can never reach into an object.
"""
from __future__ import annotations

import string
from collections.abc import Mapping

from app.errors import Invalid

__all__ = ["template_fields", "render", "missing_fields"]

_formatter = string.Formatter()


def _invalid(detail: str) -> Invalid:
    return Invalid(detail, slug="invalid-template", errors=[{"field": "message", "message": detail}])


def _parts(template: str) -> list[tuple[str, str | None]]:
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise _invalid(f"the message template is not valid: {exc} (write {{{{ and }}}} for braces)") from None
    parts = []
    for literal, field, spec, conversion in parsed:
        if field is not None:
            name = field.strip()
            if not name or name.isdigit() or any(c in name for c in ".[]") or spec or conversion:
                raise _invalid(f"{{{field}}} is not a plain field name: write {{name}} for the audience's 'name'")
            field = name
        parts.append((literal, field))
    return parts


def template_fields(template: str) -> list[str]:
    """The field names a template uses, in order, each once.

    Raises:
      Invalid: the template is malformed or uses more than a plain field name (400, ``invalid-template``).
    """
    seen: dict[str, None] = {}
    for _literal, field in _parts(template):
        if field is not None:
            seen.setdefault(field)
    return list(seen)


def missing_fields(template: str, available) -> list[str]:
    """The template's fields that are not in ``available``."""
    have = set(available)
    return [field for field in template_fields(template) if field not in have]


def render(template: str, data: Mapping[str, object]) -> str:
    """The template with each field replaced by the row's value (a missing or null value: empty)."""
    out = []
    for literal, field in _parts(template):
        out.append(literal)
        if field is not None:
            value = data.get(field)
            out.append("" if value is None else str(value))
    return "".join(out)
