"""Rail-independent helpers for source plugins: pure functions on text, stdlib only.

Plugins reach them as ``from app.hooks import toolkit``. Nothing here imports the
rest of ``app``.

- Tables: :func:`read_table` streams a CSV file as :class:`Record` objects (header
  found below a preamble, footers and balance rows skipped, physical line numbers);
  :func:`settle_day_first` decides the date order from a bounded look-ahead.
- Values: :func:`parse_amount` (exact ``Decimal``, ``₹``, Indian grouping, ``Dr`` /
  ``Cr``), :func:`parse_date`, :func:`parse_time`, :func:`parse_datetime`,
  :func:`to_utc`, :func:`zone`, :func:`parse_status`, :func:`parse_direction`.
- Identifiers: :func:`normalise_rrn`, :func:`normalise_vpa`, :func:`normalise_utr`,
  :func:`normalise_ifsc`, :func:`normalise_txn_id`, :func:`looks_like_utr`,
  :func:`scan_narration`, :func:`content_id`.
- Errors: a bad cell raises :class:`BadValue` (its message is the row error's
  reason); a file that cannot be read raises :class:`UnreadableFile`.
"""
from .amounts import MAX_AMOUNT, Amount, parse_amount
from .dates import day_first_evidence, parse_date, parse_datetime, parse_time, to_utc, zone
from .errors import BadValue, UnreadableFile
from .ids import (
    Narration,
    content_id,
    looks_like_utr,
    normalise_ifsc,
    normalise_rrn,
    normalise_txn_id,
    normalise_utr,
    normalise_vpa,
    scan_narration,
)
from .table import Record, read_table, settle_day_first
from .vocab import normalise_header, parse_direction, parse_status

__all__ = [
    "MAX_AMOUNT",
    "Amount",
    "BadValue",
    "Narration",
    "Record",
    "UnreadableFile",
    "content_id",
    "day_first_evidence",
    "looks_like_utr",
    "normalise_header",
    "normalise_ifsc",
    "normalise_rrn",
    "normalise_txn_id",
    "normalise_utr",
    "normalise_vpa",
    "parse_amount",
    "parse_date",
    "parse_datetime",
    "parse_direction",
    "parse_status",
    "parse_time",
    "read_table",
    "scan_narration",
    "settle_day_first",
    "to_utc",
    "zone",
]
