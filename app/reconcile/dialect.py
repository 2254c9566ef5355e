"""The few SQL fragments that differ between PostgreSQL and SQLite, for the matching statements.

Amounts are compared and summed in cents: exact NUMERIC on PostgreSQL; on SQLite (which keeps
NUMERIC as a float) each amount is rounded to whole cents first, so both give the same answers.
Times are compared in whole seconds since the epoch; notes print them in UTC.
"""
from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["Dialect"]


class Dialect:
    """SQL text of one database dialect (``postgresql`` or ``sqlite``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pg = name == "postgresql"

    def cents(self, amount: str) -> str:
        """An amount in cents: exact on both."""
        return f"({amount} * 100)" if self.pg else f"CAST(round({amount} * 100) AS INTEGER)"

    def seconds(self, when: str) -> str:
        """A time as seconds since the epoch."""
        return f"extract(epoch from {when})" if self.pg else f"CAST(strftime('%s', {when}) AS INTEGER)"

    def apart(self, a: str, b: str, seconds: str) -> str:
        """Whether two times lie more than ``seconds`` apart (interval arithmetic on PostgreSQL)."""
        if self.pg:
            gap = f"make_interval(secs => {seconds})"
            return f"({a} > {b} + {gap} OR {b} > {a} + {gap})"
        return f"(abs({self.seconds(a)} - {self.seconds(b)}) > {seconds})"

    def smallest_text(self, column: str) -> str:
        """``min()`` of a text column, compared byte by byte (no locale rules: cheaper, and the same on both)."""
        return f'min({column} COLLATE "C")' if self.pg else f"min({column})"

    def bytewise(self, text: str) -> str:
        """A text to sort byte by byte (SQLite always does)."""
        return f'({text}) COLLATE "C"' if self.pg else text

    def differs(self, a: str, b: str) -> str:
        """``a`` and ``b`` differ, a NULL differing from a value and equal to a NULL."""
        return f"({a} IS DISTINCT FROM {b})" if self.pg else f"({a} IS NOT {b})"

    def from_cents(self, cents: str) -> str:
        """Cents as an amount to store."""
        return f"CAST(({cents}) / 100 AS NUMERIC(18, 2))" if self.pg else f"(({cents}) / 100.0)"

    def money(self, cents: str) -> str:
        """Cents as text with two decimals: ``1234.50``."""
        return f"CAST(({cents}) / 100 AS NUMERIC(18, 2))::text" if self.pg else f"printf('%.2f', ({cents}) / 100.0)"

    def minute(self, when: str) -> str:
        """A time as ``2026-11-01 10:00 UTC``."""
        if self.pg:
            return f"(to_char({when} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC')"
        return f"(strftime('%Y-%m-%d %H:%M', {when}) || ' UTC')"

    def hours(self, seconds: str) -> str:
        """Seconds as hours with one decimal: ``72.0``."""
        return f"round(({seconds}) / 3600.0, 1)::text" if self.pg else f"printf('%.1f', ({seconds}) / 3600.0)"

    def joined(self, expression: str) -> str:
        """An aggregate: ``a, b, c``, the group's values sorted (SQLite: in the order of its input rows)."""
        return f"string_agg({expression}, ', ' ORDER BY {expression})" if self.pg else f"group_concat({expression}, ', ')"

    def temp(self, name: str) -> str:
        """The start of ``CREATE TEMP TABLE name ... AS``: dropped at commit on PostgreSQL."""
        return f"CREATE TEMP TABLE {name} ON COMMIT DROP AS" if self.pg else f"CREATE TEMP TABLE {name} AS"

    def when(self, value: datetime) -> object:
        """A time as a bound value compares with the stored ones (naive UTC text on SQLite)."""
        value = value.astimezone(UTC)
        return value if self.pg else value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
