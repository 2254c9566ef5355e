"""Identifiers of the rails: RRN, VPA, UTR, IFSC, transaction ids, and ids made from content."""
from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from .errors import BadValue

__all__ = [
    "Narration",
    "content_id",
    "looks_like_utr",
    "normalise_ifsc",
    "normalise_rrn",
    "normalise_txn_id",
    "normalise_utr",
    "normalise_vpa",
    "scan_narration",
]

#: A UPI / IMPS retrieval reference number.
RRN = re.compile(r"\d{12}")
#: A virtual payment address, ``name@handle``.
VPA = re.compile(r"[a-z0-9][a-z0-9._-]{0,255}@[a-z][a-z0-9.-]{1,63}")
#: A branch code: four letters (the bank), a zero, six letters or digits.
IFSC = re.compile(r"[A-Z]{4}0[A-Z0-9]{6}")
#: A NEFT (16 characters) or RTGS (22 characters) UTR: the bank's four letters first.
UTR = re.compile(r"[A-Z]{4}[A-Z0-9]{12}(?:[A-Z0-9]{6})?")
#: A value someone meant as a UTR: a bank code, then letters and digits.
_UTR_LIKE = re.compile(r"[A-Z]{4}[A-Z0-9]{6,26}")
#: A transaction id: letters, digits and a little punctuation, at most 64 characters.
TXN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
#: A spreadsheet's scientific notation, which has lost the id's digits.
_SCIENTIFIC = re.compile(r"\d(?:\.\d+)?E\+?\d+", re.IGNORECASE)
#: A spreadsheet's text guards: a leading apostrophe, or ``="..."``.
_GUARD = re.compile(r"""^(?:'|=")(.*?)"?$""")
#: Where a narration's parts are split: ``NEFT Cr-IFSC-NAME-NAME-UTR``, ``NEFT*IFSC*...``.
_SEGMENT = re.compile(r"[-*/|:]")
#: White space, removed from ids that spreadsheets or people split into groups.
_SPACE = re.compile(r"\s+")
#: A counterparty name in a narration: letters, spaces and a little punctuation.
_NAME = re.compile(r"[A-Za-z][A-Za-z .,&']*[A-Za-z.]")


def _clean(text: str) -> str:
    text = text.strip()
    if text[:1] not in ("'", "="):  # the common case: no spreadsheet guard
        return text
    guarded = _GUARD.match(text)
    return guarded.group(1).strip() if guarded else text


def normalise_rrn(text: str) -> str:
    """A 12-digit RRN, spaces and spreadsheet guards removed.

    Raises:
      BadValue: not 12 digits (the reason says if a spreadsheet turned it into ``5.2E+11``).
    """
    if RRN.fullmatch(text):  # the common case: already clean
        return text
    rrn = _SPACE.sub("", _clean(text))
    if RRN.fullmatch(rrn):
        return rrn
    if _SCIENTIFIC.fullmatch(rrn):
        raise BadValue(f"RRN {text.strip()!r} was mangled by a spreadsheet (scientific notation)")
    raise BadValue(f"RRN {text.strip()!r} is not 12 digits")


def normalise_vpa(text: str) -> str:
    """A VPA ``name@handle`` in lower case.

    Raises:
      BadValue: not of that form.
    """
    vpa = _clean(text).lower()
    if VPA.fullmatch(vpa):
        return vpa
    raise BadValue(f"VPA {text.strip()!r} is not of the form name@handle")


def normalise_ifsc(text: str) -> str:
    """An IFSC in upper case (``CITI0000002``).

    Raises:
      BadValue: not four letters, a zero and six letters or digits.
    """
    ifsc = _SPACE.sub("", _clean(text)).upper()
    if IFSC.fullmatch(ifsc):
        return ifsc
    raise BadValue(f"IFSC {text.strip()!r} is not 4 letters, a 0 and 6 letters or digits")


def normalise_utr(text: str) -> str:
    """A UTR in upper case without spaces.

    Raises:
      BadValue: not 16 (NEFT) or 22 (RTGS) letters and digits starting with a bank code.
    """
    utr = _SPACE.sub("", _clean(text)).upper()
    if UTR.fullmatch(utr):
        return utr
    if re.fullmatch(r"[A-Z0-9]+", utr) and len(utr) not in (16, 22):
        raise BadValue(f"UTR {text.strip()!r} is {len(utr)} characters, not 16 or 22")
    raise BadValue(f"UTR {text.strip()!r} is not a bank code and 12 or 18 letters and digits")


def looks_like_utr(text: str) -> bool:
    """Whether a reference cell was meant as a UTR (a bank code, then letters and digits).

    A cheque number or a bank's numeric reference is not; a mistyped UTR is, so that
    :func:`normalise_utr` can report it.
    """
    return bool(_UTR_LIKE.fullmatch(_SPACE.sub("", _clean(text)).upper()))


def normalise_txn_id(text: str) -> str:
    """A transaction id as given (spreadsheet guards removed).

    Raises:
      BadValue: spaces or odd characters, or longer than 64 characters.
    """
    txn_id = _clean(text)
    if TXN_ID.fullmatch(txn_id):
        return txn_id
    raise BadValue(f"transaction id {text.strip()!r} is not up to 64 letters and digits")


class Narration(NamedTuple):
    """What a bank statement's narration says about the other side."""

    utr: str | None
    ifsc: str | None
    name: str | None


def scan_narration(text: str) -> Narration:
    """Find the UTR, the IFSC and the counterparty's name in a narration.

    ``NEFT Cr-CITI0000002-REMITTER-BENEFICIARY-CITIN52025082917691328`` gives the UTR
    ``CITIN52025082917691328``, the IFSC ``CITI0000002`` and the name ``REMITTER`` (the
    first name after the IFSC). A UTR here must also hold at least eight digits, so
    that a long name is not taken for one.

    Returns:
      The :class:`Narration`; a part not found is ``None``.
    """
    utr = ifsc = None
    for token in re.findall(r"[A-Za-z0-9]+", text.upper()):
        if ifsc is None and IFSC.fullmatch(token):
            ifsc = token
        elif utr is None and UTR.fullmatch(token) and sum(c.isdigit() for c in token) >= 8:
            utr = token
    name = None
    if ifsc:
        segments = [segment.strip() for segment in _SEGMENT.split(text)]
        after = next(i for i, segment in enumerate(segments) if ifsc in segment.upper()) + 1
        name = next((s for s in segments[after:] if _NAME.fullmatch(s) and s.upper() != utr), None)
    return Narration(utr, ifsc, name)


def content_id(*parts: object) -> str:
    """A deterministic id for a row that carries none: ``h:`` and the SHA-1 of its parts.

    Parameters:
      parts: the row's canonical values (e.g. date, amount, direction, narration, balance),
        joined with ``|``.
    """
    text = "|".join("" if part is None else str(part) for part in parts)
    return "h:" + hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
