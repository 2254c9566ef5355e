"""Amounts: exact ``Decimal`` values from the ways Indian files write money."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import NamedTuple

from .errors import BadValue

__all__ = ["MAX_AMOUNT", "Amount", "parse_amount"]

#: The largest amount a NUMERIC(18, 2) column holds.
MAX_AMOUNT = Decimal("9999999999999999.99")
#: Every amount is quantised to two places.
_CENT = Decimal("0.01")
#: Currency marks, before or after the number: ``₹``, ``INR``, ``Rs.``.
_CURRENCY = re.compile(r"₹|INR|Rs\.?", re.IGNORECASE)
#: Spaces, including the no-break and thin spaces spreadsheets put in numbers.
_SPACES = re.compile(r"[\s\u00a0\u2009\u202f]+")
#: A ``Dr`` / ``Cr`` marker after the number.
_MARKER = re.compile(r"(dr|cr)\.?$", re.IGNORECASE)
#: A plain number, the common case, read without the general rules below.
_PLAIN = re.compile(r"\d{1,16}(?:\.\d{0,2})?")
#: Digits with Western (``123,456``) or Indian (``1,23,456``) grouping, or none; a fraction.
_NUMBER = re.compile(
    r"(?P<whole>\d{1,3}(?:,\d{3})+|\d{1,2}(?:,\d{2})+,\d{3}|\d+)?(?:\.(?P<fraction>\d*))?"
)


class Amount(NamedTuple):
    """A parsed amount: its size, and the direction its text gave, if any.

    Parameters:
      value: non-negative, quantised to two places.
      direction: ``DR`` (a minus sign, parentheses or a ``Dr`` mark), ``CR`` (a ``Cr``
        mark) or ``None`` (a plain number).
    """

    value: Decimal
    direction: str | None


def parse_amount(text: str) -> Amount:
    """Read an amount such as ``₹ 1,23,456.78 Cr``, ``(500.00)`` or ``-1,000``.

    Parameters:
      text: the cell's text.

    Returns:
      The :class:`Amount`; never a float on the way.

    Raises:
      BadValue: empty, not a number, more than two non-zero decimals, contradictory
        signs, or larger than NUMERIC(18, 2).
    """
    if _PLAIN.fullmatch(text):
        return Amount(Decimal(text).quantize(_CENT), None)
    cleaned = _SPACES.sub("", _CURRENCY.sub("", text))
    if not cleaned:
        raise BadValue("amount is empty")
    marker = None
    if found := _MARKER.search(cleaned):
        marker = found.group(1).upper()
        cleaned = cleaned[: found.start()]
    signs = 0
    if cleaned.startswith("(") and cleaned.endswith(")"):
        cleaned, signs = cleaned[1:-1], signs + 1
    if cleaned[:1] in ("-", "+"):
        signs += cleaned[0] == "-"
        cleaned = cleaned[1:]
    elif cleaned.endswith("-"):
        cleaned, signs = cleaned[:-1], signs + 1
    number = _NUMBER.fullmatch(cleaned)
    if not cleaned or not number or not (number["whole"] or number["fraction"]):
        raise BadValue(f"amount {text.strip()!r} is not a number")
    if signs > 1 or (signs and marker == "CR"):
        raise BadValue(f"amount {text.strip()!r} has contradictory signs")
    whole = (number["whole"] or "0").replace(",", "").lstrip("0")
    if len(whole) > 16:
        raise BadValue(f"amount {text.strip()!r} is larger than NUMERIC(18,2) holds")
    value = Decimal(f"{whole or '0'}.{number['fraction'] or '0'}")
    cents = value.quantize(_CENT)
    if cents != value:
        raise BadValue(f"amount {text.strip()!r} has more than 2 decimal places")
    return Amount(cents, "DR" if signs else marker)
