"""A parsed transaction checked against the table, and rendered for a bulk load.

Plugins are trusted code but their input is not: whatever a plugin yields is
checked here (types, lengths, the amount's precision) before it goes near the
database, so one odd row becomes a rejected row instead of failing a whole
``COPY`` batch.
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

from app.hooks import Transaction

__all__ = ["STAGING_COLUMNS", "problem", "copy_line", "staged_line", "row_values", "raw_text", "STATUSES"]

#: The columns a loader stages for each row, in order.
STAGING_COLUMNS = (
    "txn_id", "amount", "status", "txn_time", "direction", "currency", "reference",
    "counterparty", "ifsc", "settlement_date", "line", "raw_row",
)
#: The canonical statuses (see :class:`app.hooks.Transaction`).
STATUSES = frozenset({"SUCCESS", "FAILED", "PENDING"})
#: ``NUMERIC(18, 2)``: 16 digits before the point.
AMOUNT_LIMIT = Decimal(10) ** 16
#: Column widths (longer counterparties are cut: ``raw_row`` keeps the original).
TXN_ID_WIDTH, REFERENCE_WIDTH, COUNTERPARTY_WIDTH, IFSC_WIDTH = 64, 64, 255, 11
#: ``COPY`` text format: NULL, and the characters a value must escape.
NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
#: An amount as canonical text: what ``NUMERIC(18, 2)`` holds exactly.
_AMOUNT_TEXT = re.compile(r"\d{1,16}(?:\.\d{1,2})?")
#: What a row's values joined by tabs must not hold to go to ``COPY`` as they are.
_NOT_PLAIN = re.compile(r"[\n\r\x00]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _json(value: Any) -> str:
    """Compact JSON text, non-ASCII kept (orjson: the encoding is a third of a row's rendering
    with the standard library's encoder). Raises TypeError for what JSON cannot hold."""
    return orjson.dumps(value).decode()


def problem(tx: Transaction) -> str | None:
    """Why ``tx`` cannot be stored as it is, or ``None`` if it can."""
    txn_id, amount = tx.txn_id, tx.amount
    if not isinstance(txn_id, str) or not 0 < len(txn_id) <= TXN_ID_WIDTH:
        return f"txn_id must be 1 to {TXN_ID_WIDTH} characters"
    if (
        not isinstance(amount, Decimal)
        or not amount.is_finite()
        or amount.as_tuple().exponent < -2  # type: ignore[operator]
        or abs(amount) >= AMOUNT_LIMIT
    ):
        return f"amount {amount} is not a number of at most 16 digits and 2 decimals"
    if tx.status not in STATUSES:
        return f"status {tx.status!r} is not SUCCESS, FAILED or PENDING"
    if tx.direction not in (None, "DR", "CR"):
        return f"direction {tx.direction!r} is not DR or CR"
    if not isinstance(tx.currency, str) or len(tx.currency) != 3 or not tx.currency.isalpha():
        return f"currency {tx.currency!r} is not a 3-letter code"
    if tx.reference is not None and (not isinstance(tx.reference, str) or len(tx.reference) > REFERENCE_WIDTH):
        return f"reference is longer than {REFERENCE_WIDTH} characters"
    if tx.ifsc is not None and (not isinstance(tx.ifsc, str) or len(tx.ifsc) > IFSC_WIDTH):
        return f"IFSC {tx.ifsc!r} is longer than {IFSC_WIDTH} characters"
    if tx.txn_time is not None and (not isinstance(tx.txn_time, datetime) or tx.txn_time.tzinfo is None):
        return "txn_time is not a timezone-aware time"
    if tx.settlement_date is not None and not isinstance(tx.settlement_date, date):
        return "settlement_date is not a date"
    if tx.counterparty is not None and not isinstance(tx.counterparty, str):
        return "counterparty is not text"
    return None


def _esc(text: str) -> str:
    return text.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(text) else text


def copy_line(tx: Transaction) -> str | None:
    """``tx`` as one line of ``COPY ... FROM STDIN`` text in :data:`STAGING_COLUMNS` order.

    Returns ``None`` if the row holds a NUL character, which PostgreSQL cannot store.

    Raises:
      ValueError, TypeError: ``raw_row`` is not a JSON object.
    """
    raw = _json(tx.raw_row)
    counterparty = tx.counterparty
    line = "\t".join((
        _esc(tx.txn_id),
        str(tx.amount),
        tx.status,
        tx.txn_time.isoformat() if tx.txn_time is not None else NULL,
        tx.direction or NULL,
        tx.currency,
        _esc(tx.reference) if tx.reference is not None else NULL,
        _esc(counterparty[:COUNTERPARTY_WIDTH]) if counterparty is not None else NULL,
        _esc(tx.ifsc) if tx.ifsc is not None else NULL,
        tx.settlement_date.isoformat() if tx.settlement_date is not None else NULL,
        str(tx.line),
        raw.replace("\\", "\\\\") if "\\" in raw else raw,  # JSON escapes tabs and line breaks itself
    ))
    if "\x00" in line or "\\u0000" in raw:
        return None
    return line + "\n"


def staged_line(values: tuple, line: int, raw: str) -> str | None:
    """A plugin's fast-path row (see :func:`app.hooks.stage_table`) as one line of ``COPY`` text.

    Parameters:
      values: ``(txn_id, amount, status, txn_time, direction, currency, reference,
        counterparty, ifsc, settlement_date)`` as text (``None``: no value): the amount as
        plain digits with at most 2 decimals, the times in ISO 8601 with their offset.
      line: the row's line number.
      raw: the row's ``raw_row`` as JSON text, already escaped for ``COPY``.

    Returns:
      The line, or ``None`` when a value is not what the table holds or needs escaping:
      the caller then takes the row the full way (a :class:`Transaction`, checked by
      :func:`problem`), so the reason a row is rejected never depends on the path.
    """
    txn_id, amount, status, txn_time, direction, currency, reference, counterparty, ifsc, settled = values
    if (
        not 0 < len(txn_id) <= TXN_ID_WIDTH
        or status not in STATUSES
        or direction not in (None, "DR", "CR")
        or len(currency) != 3 or not currency.isalpha()
        or (reference is not None and len(reference) > REFERENCE_WIDTH)
        or (ifsc is not None and len(ifsc) > IFSC_WIDTH)
        or not _AMOUNT_TEXT.fullmatch(amount)
    ):
        return None
    head = "\t".join((
        txn_id, amount, status, NULL if txn_time is None else txn_time, direction or NULL, currency,
        NULL if reference is None else reference,
        NULL if counterparty is None else counterparty[:COUNTERPARTY_WIDTH],
        NULL if ifsc is None else ifsc, NULL if settled is None else settled,
    ))
    if _NOT_PLAIN.search(head) or head.count("\t") != 9 or head.count("\\") != values.count(None):
        return None  # one search for the whole row (a backslash is a NULL's): values to escape go the full way
    return f"{head}\t{line}\t{raw}\n"


def row_values(tx: Transaction) -> dict[str, Any]:
    """``tx`` as the values of one staging row (for ``executemany``).

    Raises:
      ValueError, TypeError: ``raw_row`` is not a JSON object.
    """
    _json(tx.raw_row)
    return {
        "txn_id": tx.txn_id,
        "amount": tx.amount,
        "status": tx.status,
        "txn_time": tx.txn_time.astimezone(UTC) if tx.txn_time is not None else None,
        "direction": tx.direction,
        "currency": tx.currency,
        "reference": tx.reference,
        "counterparty": tx.counterparty[:COUNTERPARTY_WIDTH] if tx.counterparty is not None else None,
        "ifsc": tx.ifsc,
        "settlement_date": tx.settlement_date,
        "line": tx.line,
        "raw_row": dict(tx.raw_row),
    }


def raw_text(tx: Transaction) -> str:
    """The original row of ``tx`` as text (its ``raw_row`` as JSON), for a rejected-row record."""
    try:
        return _json(dict(tx.raw_row))
    except (TypeError, ValueError):
        return repr(tx.raw_row)
