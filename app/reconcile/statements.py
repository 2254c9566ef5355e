"""What every phase of a run shares: its parameters, bound values, and SQL fragments.

A run's statements are SQL text built here from the plugin's rules (whose columns are
checked against :data:`KEY_COLUMNS` and :data:`FALLBACK_COLUMNS`) and bound values; the
differences between PostgreSQL and SQLite are in :mod:`app.reconcile.dialect`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.hooks import MatchRules
from app.reconcile.dialect import Dialect
from app.reconcile.models import MISMATCH_TYPES

__all__ = ["Params", "Statements", "KEY_COLUMNS", "FALLBACK_COLUMNS", "BREAKS", "FT"]

#: Columns a plugin may name as a key, or as a fallback column that must be equal.
KEY_COLUMNS = frozenset({"reference", "txn_id"})
FALLBACK_COLUMNS = frozenset({"counterparty", "ifsc", "direction"})
#: Rows seen outside the period at least this far either side, so a drifted partner is found.
MIN_MARGIN = timedelta(days=7)
#: Outcomes of a pair that are breaks.
BREAKS = MISMATCH_TYPES
#: The table of both ledgers.
FT = "fintech_transactions"
#: What ``rc_res`` keeps of each side of an outcome: the notes and the breaks need nothing more.
SIDE = ("id", "txn_id", "c", "t", "st")
RES_COLUMNS = "outcome, rule, iid, ix, ic, it, ist, eid, ex, ec, et, est, detail"


@dataclass(frozen=True)
class Params:
    """One run: whose rows, which rail, which period and tolerances."""

    tenant_id: str
    source: str
    rules: MatchRules
    start: datetime  # the period, in UTC: [start, end)
    end: datetime
    amount_tolerance: Decimal
    date_tolerance_hours: int
    grace_hours: float
    run_id: int
    now: datetime
    #: an earlier attempt of this run stored its breaks (the run has a summary), so breaks may
    #: already carry its ``run_id``; otherwise only this attempt's writes do
    stored_before: bool = False

    @property
    def margin(self) -> timedelta:
        windows = [k.window_hours for k in self.rules.keys if k.window_hours]
        return max(MIN_MARGIN, timedelta(hours=self.date_tolerance_hours), *(timedelta(hours=w) for w in windows))


class Statements:
    """A run's connection, parameters and the SQL fragments its phases share."""

    def __init__(self, connection: sa.Connection, params: Params, on_phase) -> None:
        self.c = connection
        self.p = params
        self.d = Dialect(connection.dialect.name)
        self.on_phase = on_phase or (lambda _n, _name: None)
        #: the main key's matched pairs: how many, and their ledger amount in cents
        self.matched: tuple = (0, 0)
        rules = params.rules
        self.key = rules.keys[0]
        for column in [k.column for k in rules.keys]:
            if column not in KEY_COLUMNS:
                raise ValueError(f"matching rules of {params.source}: {column!r} cannot be a key")
        for column in rules.fallback:
            if column not in FALLBACK_COLUMNS:
                raise ValueError(f"matching rules of {params.source}: {column!r} cannot be a fallback column")
        self.bind = {
            "tenant": params.tenant_id,
            "source": params.source,
            "lo": self.d.when(params.start),
            "hi": self.d.when(params.end),
            "wlo": self.d.when(params.start - params.margin),
            "whi": self.d.when(params.end + params.margin),
            "grace": self.d.when(params.now - timedelta(hours=params.grace_hours)),
            "tol_cents": int(params.amount_tolerance * 100),
            "tol_seconds": params.date_tolerance_hours * 3600,
            "run": params.run_id,
            "now": self.d.when(params.now),
        }

    # -- helpers -------------------------------------------------------------------------------

    def x(self, statement: str, **extra) -> sa.CursorResult:
        return self.c.execute(sa.text(statement), {**self.bind, **extra})

    def temp(self, name: str, select: str, **extra) -> None:
        self.x(f"{self.d.temp(name)} {select}", **extra)
        self.analyze(name)

    def analyze(self, name: str) -> None:
        """Statistics of a temporary table for the planner (PostgreSQL), from a small sample of it.

        The phases' plans need row counts and rough distributions, not fine histograms: the run's
        ``default_statistics_target`` (:data:`~app.reconcile.tuning.STATISTICS`) reads 3,000
        rows where PostgreSQL's default reads 30,000.
        """
        if self.d.pg:
            self.x(f"ANALYZE {name}")

    def in_period(self, when: str) -> str:
        return f"({when} >= :lo AND {when} < :hi)"

    def drift(self, a: str, b: str) -> str:
        return f"abs({self.d.seconds(a)} - {self.d.seconds(b)})"

    @staticmethod
    def col(relation: str | dict[str, str], name: str) -> str:
        """A side's column: ``relation`` is an alias (``i`` → ``i.st``), a template (``g.i{}`` → ``g.ist``)
        or the side's expressions by column name."""
        if isinstance(relation, dict):
            return relation[name]
        return relation.format(name) if "{}" in relation else f"{relation}.{name}"

    def classify(self, i: str | dict[str, str], e: str | dict[str, str], *, rev_i: str = "0", rev_e: str = "0") -> str:
        """The outcome of a pair whose sides are ``i`` and ``e`` (see :meth:`col`: columns c, st, t)."""
        c = self.col
        differ = f"coalesce({c(i, 'st')}, '') <> coalesce({c(e, 'st')}, '')"
        young = (f"(({c(i, 'st')} = 'PENDING' AND {c(i, 't')} > :grace) "
                 f"OR ({c(e, 'st')} = 'PENDING' AND {c(e, 't')} > :grace))")
        return (
            f"CASE WHEN NOT ({self.in_period(c(i, 't'))} OR {self.in_period(c(e, 't'))}) THEN 'outside' "
            f"WHEN {rev_i} <> {rev_e} THEN 'reversed' "
            f"WHEN {differ} AND {young} THEN 'pending' "
            f"WHEN {differ} THEN 'status_mismatch' "
            f"WHEN abs({c(i, 'c')} - {c(e, 'c')}) > :tol_cents THEN 'amount_mismatch' "
            f"WHEN {self.d.apart(c(i, 't'), c(e, 't'), ':tol_seconds')} THEN 'date_drift' "
            "ELSE 'matched' END"
        )

    def window_fails(self, key, i: str | dict[str, str], e: str | dict[str, str]) -> str:
        if not key.window_hours:
            return "1 = 0"
        return self.d.apart(self.col(i, "t"), self.col(e, "t"), str(int(key.window_hours * 3600)))

    def not_taken(self, column: str) -> str:
        """``column`` (a row id) is in no row of ``rc_res`` yet."""
        return (f"{column} NOT IN (SELECT iid FROM rc_res WHERE iid IS NOT NULL) "
                f"AND {column} NOT IN (SELECT eid FROM rc_res WHERE eid IS NOT NULL)")

    def sides(self, i: str, e: str) -> str:
        """The ``rc_res`` columns of a pair: each side's id, txn_id, cents, time and status."""
        return ", ".join(f"{r}.{c}" for r in (i, e) for c in SIDE)

    def one(self, r: str, side: str) -> str:
        """The ``rc_res`` columns of a row alone on ``side`` (``i`` or ``e``, or a column holding it)."""
        if side in ("i", "e"):
            mine = ", ".join(f"{r}.{c}" for c in SIDE)
            empty = ", ".join("NULL" for _ in SIDE)
            return f"{mine}, {empty}" if side == "i" else f"{empty}, {mine}"
        return ", ".join(f"CASE WHEN {side} = '{s}' THEN {r}.{c} END" for s in ("i", "e") for c in SIDE)

    def res(self, select: str, **extra) -> None:
        """Add outcomes to ``rc_res``: ``select`` gives outcome, rule, the two sides, detail."""
        self.x(f"INSERT INTO rc_res ({RES_COLUMNS}) {select}", **extra)

    def break_list(self) -> str:
        return ", ".join(f"'{name}'" for name in BREAKS)
