"""Words files use for statuses, directions and column names, normalised."""
from __future__ import annotations

import re
from functools import lru_cache

from .errors import BadValue

__all__ = ["normalise_header", "parse_direction", "parse_status"]

#: Anything that is not a letter or digit: ignored when comparing names and words.
_PUNCTUATION = re.compile(r"[^0-9a-z]+")

#: Status words and codes (normalised: upper case, letters and digits only) to the canonical status.
STATUSES = {
    **dict.fromkeys(
        ("S", "SUCCESS", "SUCCESSFUL", "SUCCESSFULL", "SUCCEEDED", "COMPLETED", "COMPLETE",
         "APPROVED", "SETTLED", "POSTED", "PAID", "OK", "00"),
        "SUCCESS",
    ),
    **dict.fromkeys(
        ("F", "FAIL", "FAILED", "FAILURE", "DECLINED", "REJECTED", "EXPIRED", "REVERSED",
         "CANCELLED", "CANCELED", "ERROR"),
        "FAILED",
    ),
    # "Deemed" (the beneficiary bank timed out; NPCI code RB) is not a success yet.
    **dict.fromkeys(
        ("P", "PENDING", "D", "DEEMED", "DEEMEDSUCCESS", "DEEMEDAPPROVED", "INPROGRESS",
         "PROCESSING", "INITIATED", "SUBMITTED", "TIMEOUT", "TIMEDOUT", "01", "RB"),
        "PENDING",
    ),
}
#: An NPCI / IMPS response code: two letters or digits, or a letter and two digits (``U69``).
#: Codes other than those in :data:`STATUSES` (``00``, ``01``, ``RB``) mean the payment failed.
_RESPONSE_CODE = re.compile(r"[A-Z0-9]{2}|[A-Z]\d{2}")
#: Cells that say "no value".
_BLANKS = frozenset({"", "NA", "NIL", "NULL", "NONE"})

#: Direction words (normalised) to ``DR`` / ``CR``.
DIRECTIONS = {
    **dict.fromkeys(("DR", "D", "DB", "DEBIT", "WITHDRAWAL"), "DR"),
    **dict.fromkeys(("CR", "C", "CREDIT", "DEPOSIT"), "CR"),
}


def normalise_header(text: str) -> str:
    """A column name for comparison: ``Chq./Ref.No.`` and ``CHQ REF NO`` both give ``chqrefno``."""
    return _PUNCTUATION.sub("", text.casefold())


def _word(text: str) -> str:
    return _PUNCTUATION.sub("", text.casefold()).upper()


@lru_cache(maxsize=1024)  # files use a handful of words, row after row
def parse_status(text: str) -> str:
    """The canonical status of a status word or response code, in any case.

    ``S/F/P/D``, ``SUCCESS``, ``FAILURE``, ``DEEMED`` ... and NPCI codes: ``00`` is
    ``SUCCESS``; ``01`` (pending) and ``RB`` (deemed) are ``PENDING``; any other code
    (``U69`` expired collect, ``U30``, ``ZM`` ...) is ``FAILED``. A word followed by
    more (``SUCCESS (00)``) is read by its first word.

    Returns:
      ``SUCCESS``, ``FAILED`` or ``PENDING``.

    Raises:
      BadValue: empty, or neither a known word nor a response code.
    """
    word = _word(text)
    if word in _BLANKS:
        raise BadValue("status is empty")
    if word in STATUSES:
        return STATUSES[word]
    first = _word(re.split(r"[^0-9A-Za-z]+", text.strip(), maxsplit=1)[0])
    if first in STATUSES:
        return STATUSES[first]
    if _RESPONSE_CODE.fullmatch(word):
        return "FAILED"
    raise BadValue(f"status {text.strip()!r} is not a known status")


@lru_cache(maxsize=1024)
def parse_direction(text: str) -> str:
    """``DR`` or ``CR`` from ``Dr``, ``D``, ``Debit``, ``CR.``, ``Credit`` ...

    Raises:
      BadValue: not a direction word.
    """
    word = _word(text)
    if word in DIRECTIONS:
        return DIRECTIONS[word]
    raise BadValue(f"debit/credit flag {text.strip()!r} is neither DR nor CR" if word
                   else "debit/credit flag is empty")
