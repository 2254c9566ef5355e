"""Dates and times in the layouts Indian bank and switch files use.

Numeric layouts (``05/06/2025``) are ambiguous: the caller says whether the
first field is the day (``day_first=True``, the Indian default) or the month.
:func:`day_first_evidence` tells what one value proves, so a parser can settle
the order for the whole file (see :func:`app.ingest.toolkit.settle_day_first`).
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BadValue, UnreadableFile

__all__ = ["day_first_evidence", "parse_date", "parse_datetime", "parse_time", "to_utc", "zone"]

#: Month names and abbreviations (``Aug``, ``August``, ``Sept``) to their numbers.
MONTHS = {
    name: number
    for number, full in enumerate(
        ("january", "february", "march", "april", "may", "june", "july", "august",
         "september", "october", "november", "december"),
        start=1,
    )
    for name in (full, full[:3])
} | {"sept": 9}
#: The zone of local times when the caller names none.
_KOLKATA = ZoneInfo("Asia/Kolkata")

#: A time of day: 24-hour or 12-hour, optional seconds and fraction, optional UTC offset.
_TIME = (
    r"(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<F>\d{1,9}))?)?"
    r"\s*(?P<P>[AaPp]\.?[Mm]\.?)?\s*(?P<Z>Z|[+-]\d{2}:?\d{2})?"
)
#: A date in one of the known layouts, then optionally a time.
_DATETIME = re.compile(
    r"\s*(?:"
    r"(?P<Y>\d{4})(?P<s1>[-/.])(?P<m>\d{1,2})(?P=s1)(?P<d>\d{1,2})"  # 2025-08-29
    r"|(?P<a>\d{1,2})(?P<s2>[-/.])(?P<b>\d{1,2})(?P=s2)(?P<y>\d{4}|\d{2})"  # 29/08/2025, 29-08-25
    r"|(?P<nd>\d{1,2})[-\s/.]*(?P<nm>[A-Za-z]{3,9})\.?[-\s/.,]*(?P<ny>\d{4}|\d{2})"  # 29-Aug-2025
    r"|(?P<mm>[A-Za-z]{3,9})\.?\s*(?P<md>\d{1,2}),?\s*(?P<my>\d{4})"  # Aug 29, 2025
    r")(?:(?:[Tt]|\s*,?\s+)" + _TIME + r")?\s*"
)
#: ``29/08/2025 14:03:11`` (or with ``-`` / ``.``), the layout most switch reports use.
_FIXED = re.compile(r"(\d\d)([-/.])(\d\d)\2(\d{4}) (\d\d):(\d\d):(\d\d)")
_TIME_ONLY = re.compile(r"\s*" + _TIME + r"\s*")
#: The two leading fields of a numeric date, for evidence of their order.
_NUMERIC = re.compile(r"\s*(\d{1,2})[-/.](\d{1,2})[-/.]\d{2,4}(?:\D|$)")


def zone(name: str) -> tzinfo:
    """The time zone called ``name`` (an IANA name such as ``Asia/Kolkata``).

    Raises:
      UnreadableFile: no such zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnreadableFile(f"unknown time zone {name!r}") from exc


def day_first_evidence(text: str) -> bool | None:
    """What a numeric date proves about the file's order.

    Returns:
      ``True`` if the first field cannot be a month (``29/08/2025``), ``False`` if the
      second cannot (``08/29/2025``), ``None`` if the value proves nothing.
    """
    found = _NUMERIC.match(text)
    if not found:
        return None
    first, second = int(found.group(1)), int(found.group(2))
    if first > 12 >= second:
        return True
    if second > 12 >= first:
        return False
    return None


def _parts(text: str, day_first: bool) -> tuple[date, time | None, tzinfo | None]:
    """The date, time of day and explicit offset of a date or date-time text."""
    found = _FIXED.fullmatch(text)
    if found:  # the common machine-written layout, read without the general rules
        first, _sep, second, year, hour, minute, second_of_minute = found.groups()
        day, month = (first, second) if day_first else (second, first)
        try:
            return (_date(int(year), int(month), int(day)),
                    time(int(hour), int(minute), int(second_of_minute)), None)
        except ValueError:
            pass  # the general rules say what is wrong with it
    return _general_parts(text, day_first)


@lru_cache(maxsize=4096)
def _date(year: int, month: int, day: int) -> date:
    return date(year, month, day)


@lru_cache(maxsize=512)
def _general_parts(text: str, day_first: bool) -> tuple[date, time | None, tzinfo | None]:
    """:func:`_parts` by the general rules (cached: dates without a time repeat)."""
    found = _DATETIME.fullmatch(text)
    if not found:
        raise BadValue(f"date {text.strip()!r} is not in a known layout")
    order = ""
    if found["Y"]:
        year, month, day = int(found["Y"]), int(found["m"]), int(found["d"])
    elif found["a"]:
        first, second = int(found["a"]), int(found["b"])
        day, month = (first, second) if day_first else (second, first)
        year = _year(found["y"])
        order = " (read day-first)" if day_first else " (read month-first)"
    elif found["nm"]:
        day, month, year = int(found["nd"]), _month(found["nm"], text), _year(found["ny"])
    else:
        day, month, year = int(found["md"]), _month(found["mm"], text), int(found["my"])
    try:
        the_date = date(year, month, day)
    except ValueError:
        raise BadValue(f"date {text.strip()!r} is not a valid date{order}") from None
    if found["H"] is None:
        return the_date, None, None
    return the_date, _time(found, text), _offset(found["Z"])


def _year(text: str) -> int:
    """A four-digit year; ``25`` is 2025 (these rails are younger than 2000)."""
    return int(text) + 2000 if len(text) == 2 else int(text)


def _month(name: str, text: str) -> int:
    try:
        return MONTHS[name.lower()]
    except KeyError:
        raise BadValue(f"date {text.strip()!r} has an unknown month {name!r}") from None


def _time(found: re.Match[str], text: str) -> time:
    hour, minute, second = int(found["H"]), int(found["M"]), int(found["S"] or 0)
    micro = int((found["F"] or "0")[:6].ljust(6, "0"))
    if found["P"]:
        if not 1 <= hour <= 12:
            raise BadValue(f"time {text.strip()!r} has hour {hour} with AM/PM")
        hour = hour % 12 + (12 if found["P"][0] in "Pp" else 0)
    try:
        return time(hour, minute, second, micro)
    except ValueError:
        raise BadValue(f"time {text.strip()!r} is not a valid time of day") from None


def _offset(text: str | None) -> tzinfo | None:
    if not text:
        return None
    if text == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-delta if text[0] == "-" else delta)


def parse_date(text: str, *, day_first: bool = True) -> date:
    """Read a date (a time after it is allowed and ignored).

    Parameters:
      text: e.g. ``29/08/2025``, ``29-Aug-25``, ``2025-08-29 14:03``.
      day_first: how to read an ambiguous numeric date.

    Raises:
      BadValue: not a date in a known layout, or no such day.
    """
    return _parts(text, day_first)[0]


def parse_time(text: str) -> time:
    """Read a time of day: ``14:03``, ``14:03:11.250``, ``2:03:11 PM``.

    A date before the time (a spreadsheet's ``1899-12-30 14:03:11``) is ignored.

    Raises:
      BadValue: not a time of day.
    """
    found = _TIME_ONLY.fullmatch(text)
    if found:
        return _time(found, text)
    moment = _parts(text, True)[1]
    if moment is None:
        raise BadValue(f"time {text.strip()!r} is not a time of day")
    return moment


def to_utc(local: datetime, where: tzinfo) -> datetime:
    """``local`` (naive: a wall-clock time in ``where``; aware: kept) as an aware UTC datetime."""
    if local.tzinfo is None:
        local = local.replace(tzinfo=where)
    return local.astimezone(UTC)


def parse_datetime(text: str, *, day_first: bool = True, where: tzinfo | None = None) -> datetime:
    """Read a date with an optional time (midnight if none) as an aware UTC datetime.

    Parameters:
      text: e.g. ``29/08/2025 02:03:11 PM``, ``2025-08-29T14:03:11+05:30``.
      day_first: how to read an ambiguous numeric date.
      where: the zone of local times (default ``Asia/Kolkata``); an offset in the text wins.

    Raises:
      BadValue: not a date in a known layout, or no such day or time.
    """
    the_date, moment, offset = _parts(text, day_first)
    local = datetime.combine(the_date, moment or time(), tzinfo=offset)
    return to_utc(local, where or _KOLKATA)

