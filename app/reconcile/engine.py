"""The matching itself: set-based SQL over one tenant's ledger and bank / switch rows.

One run is one transaction of the tenant's scope (row-level security on PostgreSQL), in
phases over temporary tables; no statement runs per row:

1. **Main key** (RRN for UPI, UTR for NEFT): each side's rows of the period (widened by a
   margin) are grouped by the key, the two groupings joined with one ``FULL OUTER JOIN`` (a
   hash join on PostgreSQL; a left join and an anti-join on SQLite) and every pair classified
   in the same statement. A key held by one row on each side is a pair; a key with no
   partner, or rows without the key, go on to the next phases; a key held twice on one side
   goes to phase 2.
2. **Ties on one side**: a row of the opposite direction and the same amount after a payment
   is its reversal (``reversed`` when only one side shows it); any further row is a
   ``duplicate``; the first rows of each side then pair as in phase 1.
3. **Further keys** (the UPI transaction id) pair what is left, one candidate each way.
4. **Fallback** where the main key is missing on a side: amount within the tolerance, dates
   within the window, equal counterparty (and the plugin's other columns); more than one
   candidate either way is ``ambiguous``, never a guess.
5. **Settlement groups** (UPI): a settlement row against the other side's successful rows of
   its settlement date, fees netted up to the plugin's limit.
6. What is left is ``missing_internal`` / ``missing_external``, unless it lies outside the
   period (the margin) or is a ``PENDING`` payment still within its grace window.

Breaks then go into ``reconciliations`` under a stable key (source, type and both txn ids):
a break seen before is ``persisting``, one not seen again in its period ``resolved``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.hooks import MatchRules
from app.reconcile.dialect import Dialect
from app.reconcile.models import MISMATCH_TYPES

__all__ = ["Params", "match", "tune", "PHASES", "WORK_MEM", "TUNING", "KEY_COLUMNS", "FALLBACK_COLUMNS"]

logger = logging.getLogger(__name__)

#: Columns a plugin may name as a key, or as a fallback column that must be equal.
KEY_COLUMNS = frozenset({"reference", "txn_id"})
FALLBACK_COLUMNS = frozenset({"counterparty", "ifsc", "direction"})
#: The phases, for progress reports.
PHASES = ("main key", "ties", "further keys", "fallback", "settlements", "unmatched", "breaks")
#: Memory PostgreSQL may use per hash of a run (so a million rows a side hash in memory).
WORK_MEM = "256MB"
#: Settings of a run's transaction on PostgreSQL: hashes in memory, and no JIT (compiling the
#: statements cost more than it saved).
TUNING = {"work_mem": WORK_MEM, "jit": "off"}
#: After the main key, on PostgreSQL: index lookups priced for a cached table, so the later
#: phases look up their few rows by key instead of scanning the table again.
LOOKUPS = {"random_page_cost": "1.1"}
#: Rows seen outside the period at least this far either side, so a drifted partner is found.
MIN_MARGIN = timedelta(days=7)
#: Outcomes of a pair that are breaks.
BREAKS = MISMATCH_TYPES
#: Every table a run makes.
TEMP_TABLES = ("rc_i", "rc_e", "rc_j", "rc_res", "rc_left", "rc_mk", "rc_m", "rc_rev", "rc_mr", "rc_l", "rc_c",
               "rc_cu", "rc_amb", "rc_g")

FT = "fintech_transactions"
#: What ``rc_res`` keeps of each side of an outcome: the notes and the breaks need nothing more.
SIDE = ("id", "txn_id", "c", "t", "st")
RES_COLUMNS = "outcome, rule, iid, ix, ic, it, ist, eid, ex, ec, et, est, detail"
#: A break's columns a later run may find changed.
CARRIED = ("rule", "notes", "internal_amount", "external_amount", "internal_time", "external_time",
           "internal_status", "external_status")


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

    @property
    def margin(self) -> timedelta:
        windows = [k.window_hours for k in self.rules.keys if k.window_hours]
        return max(MIN_MARGIN, timedelta(hours=self.date_tolerance_hours), *(timedelta(hours=w) for w in windows))


@dataclass
class Outcome:
    """What a run found: counts per outcome and the money on each side."""

    counts: dict[str, int] = field(default_factory=dict)
    matched_count: int = 0
    matched_external_count: int = 0
    matched_amount: Decimal = Decimal("0.00")
    unmatched_internal_amount: Decimal = Decimal("0.00")
    unmatched_external_amount: Decimal = Decimal("0.00")
    lifecycle: dict[str, int] = field(default_factory=dict)

    def as_summary(self) -> dict:
        return {
            "breaks": {name: self.counts.get(name, 0) for name in BREAKS},
            "total_breaks": sum(self.counts.get(name, 0) for name in BREAKS),
            "matched": {"count": self.matched_count, "external_count": self.matched_external_count,
                        "amount": str(self.matched_amount)},
            "unmatched_amount": {"internal": str(self.unmatched_internal_amount),
                                 "external": str(self.unmatched_external_amount)},
            "pending_in_grace": self.counts.get("pending", 0),
            "in_unmatched_settlements": self.counts.get("grouped", 0),
            "lifecycle": {name: self.lifecycle.get(name, 0) for name in ("new", "persisting", "resolved")},
        }


def _money(cents) -> Decimal:
    return (Decimal(cents or 0) / 100).quantize(Decimal("0.01"))


def tune(connection: sa.Connection, settings: dict[str, str] = TUNING) -> None:
    """Apply :data:`TUNING` (or other settings) to the connection's transaction (PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        for name, value in settings.items():
            connection.execute(sa.text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


def match(connection: sa.Connection, params: Params, *, on_phase: Callable[[int, str], None] | None = None) -> Outcome:
    """Reconcile one source's rows of one period for one tenant, in the connection's transaction.

    Parameters:
      connection: a connection in a transaction of the tenant's scope.
      on_phase: called before each phase with its number and name (progress; whatever it
        raises stops the run, and the transaction is rolled back by its owner).

    Returns:
      The counts and amounts of the run; the breaks are written to ``reconciliations``.
    """
    return _Run(connection, params, on_phase).run()


class _Run:
    """One run's statements; each phase reads and writes the temporary tables."""

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
        if self.d.pg:
            self.x(f"ANALYZE {name}")

    def in_period(self, when: str) -> str:
        return f"({when} >= :lo AND {when} < :hi)"

    def drift(self, a: str, b: str) -> str:
        return f"abs({self.d.seconds(a)} - {self.d.seconds(b)})"

    def classify(self, i: str, e: str, *, rev_i: str = "0", rev_e: str = "0") -> str:
        """The outcome of a pair whose sides are the relations ``i`` and ``e`` (columns c, st, t)."""
        differ = f"coalesce({i}.st, '') <> coalesce({e}.st, '')"
        young = f"(({i}.st = 'PENDING' AND {i}.t > :grace) OR ({e}.st = 'PENDING' AND {e}.t > :grace))"
        return (
            f"CASE WHEN NOT ({self.in_period(f'{i}.t')} OR {self.in_period(f'{e}.t')}) THEN 'outside' "
            f"WHEN {rev_i} <> {rev_e} THEN 'reversed' "
            f"WHEN {differ} AND {young} THEN 'pending' "
            f"WHEN {differ} THEN 'status_mismatch' "
            f"WHEN abs({i}.c - {e}.c) > :tol_cents THEN 'amount_mismatch' "
            f"WHEN {self.d.apart(f'{i}.t', f'{e}.t', ':tol_seconds')} THEN 'date_drift' "
            "ELSE 'matched' END"
        )

    def window_fails(self, key, i: str, e: str) -> str:
        if not key.window_hours:
            return "1 = 0"
        return self.d.apart(f"{i}.t", f"{e}.t", str(int(key.window_hours * 3600)))

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

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Outcome:
        tune(self.c)
        if self.d.pg:
            self.x("SELECT pg_advisory_xact_lock(hashtext(:lock))", lock=f"reconcile:{self.p.tenant_id}:{self.p.source}")
        for name in TEMP_TABLES:
            self.x(f"DROP TABLE IF EXISTS {name}")
        phases = (self.main_key, self.ties, self.further_keys, self.fallback, self.settlements, self.unmatched)
        for number, (phase, name) in enumerate(zip(phases, PHASES)):
            self.on_phase(number, name)
            started = time.perf_counter()
            phase()
            logger.debug("phase %s: %.3f s", name, time.perf_counter() - started)
        self.on_phase(len(phases), PHASES[-1])
        started = time.perf_counter()
        outcome = self.outcome()
        found = sum(outcome.counts.get(name, 0) for name in BREAKS)
        persisting = self.x(
            "SELECT count(*) FROM reconciliations WHERE tenant_id = :tenant AND status <> 'resolved' "
            "AND (run_id IS NULL OR run_id <> :run) AND break_key IN "
            f"(SELECT {self.break_key()} FROM rc_res r WHERE r.outcome IN ({self.break_list()}))").scalar()
        self.write_breaks()
        resolved = self.resolve_unseen()
        outcome.lifecycle = {"new": found - persisting, "persisting": persisting, "resolved": resolved}
        logger.debug("phase %s: %.3f s", PHASES[-1], time.perf_counter() - started)
        for name in TEMP_TABLES:
            self.x(f"DROP TABLE IF EXISTS {name}")
        return outcome

    def side(self, ledger: str) -> str:
        """One side's rows of the period and margin, grouped by the main key (one row per key)."""
        column = self.key.column
        d = self.d
        return (
            f"SELECT coalesce({column}, '#' || CAST(id AS TEXT)) AS k, count(*) AS n, min(id) AS id, "
            f"{d.smallest_text('txn_id')} AS txn_id, min(amount) AS a, {d.smallest_text('status')} AS st, "
            f"min(txn_time) AS t FROM {FT} WHERE tenant_id = :tenant AND ledger = '{ledger}' AND source = :source "
            "AND txn_time >= :wlo AND txn_time < :whi GROUP BY 1"
        )

    def main_key(self) -> None:
        cents = self.d.cents
        pair = (
            "CASE WHEN i.k IS NULL OR e.k IS NULL THEN 'left' WHEN i.n > 1 OR e.n > 1 THEN 'multi' "
            f"WHEN {self.window_fails(self.key, 'i', 'e')} THEN 'split' ELSE {self.classify('i', 'e')} END"
        )
        graded = "SELECT k, n, id, txn_id, {cents} AS c, st, t FROM ({side}) g"
        internal = graded.format(cents=cents("a"), side=self.side("internal"))
        external = graded.format(cents=cents("a"), side=self.side("external"))
        columns = ("i.id AS iid, i.txn_id AS ix, i.c AS ic, i.t AS it, i.st AS ist, "
                   "e.id AS eid, e.txn_id AS ex, e.c AS ec, e.t AS et, e.st AS est, "
                   f"coalesce(i.k, e.k) AS k, {pair} AS outcome")
        if self.d.pg:
            # matched pairs (most rows) are only counted: rc_j keeps the rest
            joined = f"SELECT {columns} FROM ({internal}) i FULL JOIN ({external}) e ON i.k = e.k"
            self.x(f"{self.d.temp('rc_j')} {joined} WITH NO DATA")
            self.matched = self.x(f"WITH q AS ({joined}), kept AS (INSERT INTO rc_j SELECT * FROM q "
                                  "WHERE outcome <> 'matched') SELECT count(*), coalesce(sum(ic), 0) FROM q "
                                  "WHERE outcome = 'matched'").one()
            self.x("ANALYZE rc_j")
        else:
            self.temp("rc_i", internal)
            self.temp("rc_e", external)
            self.x("CREATE INDEX temp.rc_e_k ON rc_e (k)")
            self.x("CREATE INDEX temp.rc_i_k ON rc_i (k)")
            self.temp("rc_j", f"SELECT {columns} FROM rc_i i LEFT JOIN rc_e e ON i.k = e.k "
                              f"UNION ALL SELECT {columns} FROM rc_e e LEFT JOIN rc_i i ON i.k = e.k WHERE i.k IS NULL")
            self.matched = self.x("SELECT count(*), coalesce(sum(ic), 0) FROM rc_j WHERE outcome = 'matched'").one()
            self.x("DELETE FROM rc_j WHERE outcome = 'matched'")
        self.temp("rc_res", "SELECT outcome, CAST(:rule AS VARCHAR(64)) AS rule, iid, ix, ic, it, ist, eid, ex, ec, et, est, "
                            f"CAST(NULL AS TEXT) AS detail FROM rc_j WHERE outcome IN ({self.break_list()})",
                  rule=self.key.label)
        self.temp("rc_left", "SELECT iid AS id, 'i' AS side FROM rc_j WHERE outcome IN ('left', 'split') "
                             "AND iid IS NOT NULL UNION ALL SELECT eid, 'e' FROM rc_j "
                             "WHERE outcome IN ('left', 'split') AND eid IS NOT NULL")
        self.temp("rc_mk", "SELECT k FROM rc_j WHERE outcome = 'multi'")
        tune(self.c, LOOKUPS)

    def break_list(self) -> str:
        return ", ".join(f"'{name}'" for name in BREAKS)

    def ties(self) -> None:
        """Keys held by more than one row on a side: reversals, duplicates, then the pair."""
        d = self.d
        self.temp("rc_m", f"SELECT CASE WHEN f.ledger = 'internal' THEN 'i' ELSE 'e' END AS side, f.id, m.k, "
                          f"{d.cents('f.amount')} AS c, f.direction AS dir, f.status AS st, f.txn_time AS t, f.txn_id "
                          f"FROM rc_mk m JOIN {FT} f ON f.tenant_id = :tenant AND f.{self.key.column} = m.k "
                          "WHERE f.source = :source AND f.txn_time >= :wlo AND f.txn_time < :whi")
        # a reversal: a later row of the same side and key, the other direction, the same amount
        self.temp("rc_rev", "SELECT r.id AS rid, min(o.id) AS oid FROM rc_m r JOIN rc_m o ON o.side = r.side "
                            "AND o.k = r.k AND o.dir <> r.dir AND o.c = r.c AND (o.t < r.t OR (o.t = r.t AND o.id < r.id)) "
                            "GROUP BY r.id")
        side_name = "CASE WHEN m.side = 'i' THEN 'ledger' ELSE 'bank / switch file' END"
        self.temp("rc_mr", "SELECT m.side, m.id, m.k, m.c, m.st, m.t, m.txn_id, "
                           "CASE WHEN v.rid IS NULL THEN 0 ELSE 1 END AS rev, "
                           f"CASE WHEN v.rid IS NULL THEN NULL ELSE 'reversed in the ' || {side_name} || ' by ' "
                           f"|| r.txn_id || ' on ' || {d.minute('r.t')} END AS rev_note, "
                           "row_number() OVER (PARTITION BY m.side, m.k ORDER BY m.t, m.id) AS rn "
                           "FROM rc_m m LEFT JOIN (SELECT oid, min(rid) AS rid FROM rc_rev GROUP BY oid) v ON v.oid = m.id "
                           "LEFT JOIN rc_m r ON r.id = v.rid WHERE m.id NOT IN (SELECT rid FROM rc_rev)")
        self.res(f"SELECT {self.classify('i', 'e', rev_i='i.rev', rev_e='e.rev')}, :rule, {self.sides('i', 'e')}, "
                 "coalesce(i.rev_note, e.rev_note) FROM rc_mr i JOIN rc_mr e ON e.k = i.k AND e.side = 'e' AND e.rn = 1 "
                 f"WHERE i.side = 'i' AND i.rn = 1 AND NOT ({self.window_fails(self.key, 'i', 'e')})",
                 rule=self.key.label)
        self.res(f"SELECT 'duplicate', :rule, {self.one('m', 'm.side')}, "
                 f"'the same {self.key.label} ' || m.k || ' as ' || f.txn_id || ' in the ' || {side_name} "
                 "FROM rc_mr m JOIN rc_mr f ON f.side = m.side AND f.k = m.k AND f.rn = 1 "
                 f"WHERE m.rn > 1 AND {self.in_period('m.t')}", rule=self.key.label)
        # a first row left alone: reversed on its own side is a break; else it tries the next phases
        self.res(f"SELECT 'reversed', :rule, {self.one('m', 'm.side')}, "
                 "m.rev_note || '; the other side has no record of it' FROM rc_mr m WHERE m.rn = 1 AND m.rev = 1 "
                 f"AND {self.in_period('m.t')} AND {self.not_taken('m.id')}", rule=self.key.label)
        self.x(f"INSERT INTO rc_left (id, side) SELECT m.id, m.side FROM rc_mr m WHERE m.rn = 1 AND m.rev = 0 "
               f"AND {self.not_taken('m.id')}")

    def leftovers(self) -> None:
        """``rc_l``: the rows no key paired, with what the later phases compare."""
        grouping = self.p.rules.grouping
        settle = "0"
        if grouping is not None:
            one = "i" if grouping.one == "internal" else "e"
            settle = (f"CASE WHEN l.side = '{one}' AND f.{self.key.column} IS NULL AND f.settlement_date IS NOT NULL "
                      "THEN 1 ELSE 0 END")
        self.temp("rc_l", f"SELECT l.side, f.id, f.txn_id, f.reference, {self.d.cents('f.amount')} AS c, f.status AS st, "
                          "f.txn_time AS t, f.direction, f.counterparty, f.ifsc, f.settlement_date AS sd, "
                          f"{settle} AS settle FROM rc_left l JOIN {FT} f ON f.id = l.id")

    def further_keys(self) -> None:
        self.leftovers()
        for key in self.p.rules.keys[1:]:
            self.pair_unique(
                f"SELECT i.id AS iid, e.id AS eid FROM rc_l i JOIN rc_l e ON e.side = 'e' AND e.{key.column} = i.{key.column} "
                f"WHERE i.side = 'i' AND i.settle = 0 AND e.settle = 0 AND NOT ({self.window_fails(key, 'i', 'e')})",
                rule=key.label, what=f"the same {key.label}",
            )

    def fallback(self) -> None:
        rules = self.p.rules
        if not rules.fallback:
            return
        equal = " AND ".join(f"e.{column} = i.{column}" for column in rules.fallback)
        main = self.key.column
        self.pair_unique(
            f"SELECT i.id AS iid, e.id AS eid FROM rc_l i JOIN rc_l e ON e.side = 'e' AND {equal} "
            f"WHERE i.side = 'i' AND i.settle = 0 AND e.settle = 0 AND (i.{main} IS NULL OR e.{main} IS NULL) "
            "AND abs(i.c - e.c) <= :tol_cents "
            f"AND NOT {self.d.apart('i.t', 'e.t', ':tol_seconds')} "
            "AND (i.direction IS NULL OR e.direction IS NULL OR i.direction = e.direction)",
            rule="amount + date + " + " + ".join(rules.fallback),
            what="amount, date and " + " and ".join(rules.fallback),
        )

    def pair_unique(self, candidates: str, *, rule: str, what: str) -> None:
        """Pair candidates that have exactly one candidate each way; the rest are ``ambiguous``."""
        for name in ("rc_c", "rc_cu"):
            self.x(f"DROP TABLE IF EXISTS {name}")
        self.temp("rc_c", candidates)
        self.temp("rc_cu", "SELECT iid, eid FROM rc_c WHERE iid IN (SELECT iid FROM rc_c GROUP BY iid HAVING count(*) = 1) "
                           "AND eid IN (SELECT eid FROM rc_c GROUP BY eid HAVING count(*) = 1)")
        self.res(f"SELECT {self.classify('i', 'e')}, :rule, {self.sides('i', 'e')}, NULL FROM rc_cu u "
                 "JOIN rc_l i ON i.id = u.iid JOIN rc_l e ON e.id = u.eid", rule=rule)
        for side, mine, theirs, where in (("i", "iid", "eid", "the bank / switch file"), ("e", "eid", "iid", "the ledger")):
            self.x("DROP TABLE IF EXISTS rc_amb")
            self.temp("rc_amb", f"SELECT mine AS id, count(*) AS n, {self.d.joined('txn_id')} AS listed FROM "
                                f"(SELECT cc.{mine} AS mine, o.txn_id FROM rc_c cc JOIN rc_l o ON o.id = cc.{theirs} "
                                "ORDER BY 1, 2) x GROUP BY mine")
            self.res(f"SELECT 'ambiguous', :rule, {self.one('r', side)}, "
                     f"CAST(a.n AS TEXT) || ' candidates in {where} with the {what} of this row, or candidates shared "
                     "with other rows: ' || a.listed || '; not matched, never guessed' "
                     f"FROM rc_l r JOIN rc_amb a ON a.id = r.id WHERE r.side = '{side}' "
                     f"AND r.id NOT IN (SELECT {mine} FROM rc_cu) AND {self.in_period('r.t')}", rule=rule)
        self.x("DELETE FROM rc_l WHERE id IN (SELECT iid FROM rc_c) OR id IN (SELECT eid FROM rc_c)")

    def settlements(self) -> None:
        """One settlement row against the other side's successful rows of its settlement date."""
        grouping = self.p.rules.grouping
        if grouping is None:
            return
        many, one = ("i", "e") if grouping.many == "internal" else ("e", "i")
        basis_points = int(grouping.max_fee_percent * 100)
        self.temp("rc_g", "SELECT s.id AS sid, s.c AS sc, s.sd, g.n, g.total, "
                          "(SELECT count(*) FROM rc_l o WHERE o.settle = 1 AND o.sd = s.sd "
                          "AND coalesce(o.direction, '') = coalesce(s.direction, '')) AS rivals "
                          "FROM rc_l s JOIN (SELECT sd, coalesce(direction, '') AS dir, count(*) AS n, sum(c) AS total "
                          f"FROM rc_l WHERE side = '{many}' AND settle = 0 AND st = 'SUCCESS' AND sd IS NOT NULL "
                          "GROUP BY sd, coalesce(direction, '')) g ON g.sd = s.sd AND g.dir = coalesce(s.direction, '') "
                          f"WHERE s.settle = 1 AND s.side = '{one}' AND {self.in_period('s.t')}")
        fits = f"(g.total - g.sc) * 10000 <= g.total * {basis_points} + :tol_cents * 10000 AND g.total - g.sc >= -:tol_cents"
        pair = self.sides("m", "s") if many == "i" else self.sides("s", "m")
        rule = "settlement date group"
        self.res(f"SELECT CASE WHEN {fits} THEN 'matched' ELSE 'grouped' END, :rule, {pair}, NULL "
                 "FROM rc_g g JOIN rc_l s ON s.id = g.sid "
                 f"JOIN rc_l m ON m.side = '{many}' AND m.settle = 0 AND m.st = 'SUCCESS' AND m.sd = g.sd "
                 "AND coalesce(m.direction, '') = coalesce(s.direction, '') WHERE g.rivals = 1", rule=rule)
        d = self.d
        theirs = "ledger" if many == "i" else "bank / switch file"
        self.res(f"SELECT CASE WHEN g.rivals > 1 THEN 'ambiguous' ELSE 'amount_mismatch' END, :rule, {self.one('s', one)}, "
                 f"CASE WHEN g.rivals > 1 THEN CAST(g.rivals AS TEXT) || ' settlement rows for ' || CAST(g.sd AS TEXT) "
                 "|| '; not matched, never guessed' "
                 f"ELSE 'the settlement of ' || CAST(g.sd AS TEXT) || ' is ' || {d.money('g.sc')} || ' against ' "
                 f"|| CAST(g.n AS TEXT) || ' payments in the {theirs} summing ' || {d.money('g.total')} "
                 f"|| ': the difference ' || {d.money('g.total - g.sc')} || ' is not a fee of 0 to {grouping.max_fee_percent} %' END "
                 f"FROM rc_g g JOIN rc_l s ON s.id = g.sid WHERE g.rivals > 1 OR NOT ({fits})", rule=rule)

    def unmatched(self) -> None:
        self.res("SELECT CASE WHEN NOT " + self.in_period("l.t") + " THEN 'outside' "
                 "WHEN l.st = 'PENDING' AND l.t > :grace THEN 'pending' "
                 "WHEN l.side = 'i' THEN 'missing_external' ELSE 'missing_internal' END, NULL, "
                 f"{self.one('l', 'l.side')}, NULL FROM rc_l l WHERE {self.not_taken('l.id')}")

    # -- results -------------------------------------------------------------------------------

    def outcome(self) -> Outcome:
        out = Outcome()
        first = self.matched  # the main key's pairs: counted, not kept
        out.counts = {"matched": first[0], "pending": self.x("SELECT count(*) FROM rc_j WHERE outcome = 'pending'").scalar()}
        for name, count in self.x("SELECT outcome, count(*) FROM rc_res GROUP BY outcome"):
            out.counts[name] = out.counts.get(name, 0) + count
        # a settlement group pairs one row with many: each row of a side counts once
        internal = self.x("SELECT count(*), coalesce(sum(ic), 0) FROM (SELECT DISTINCT iid, ic FROM rc_res "
                          "WHERE outcome = 'matched') x").one()
        external = self.x("SELECT count(DISTINCT eid) FROM rc_res WHERE outcome = 'matched'").scalar()
        out.matched_count = first[0] + internal[0]
        out.matched_external_count = first[0] + external
        out.matched_amount = _money(first[1]) + _money(internal[1])
        unmatched = self.x("SELECT coalesce(sum(CASE WHEN outcome = 'missing_external' THEN ic END), 0), "
                           "coalesce(sum(CASE WHEN outcome = 'missing_internal' THEN ec END), 0) FROM rc_res").one()
        out.unmatched_internal_amount, out.unmatched_external_amount = _money(unmatched[0]), _money(unmatched[1])
        return out

    def notes(self) -> str:
        d = self.d
        rules = self.p.rules
        tried = ", ".join(k.label for k in rules.keys)
        if rules.fallback:
            tried += ", or amount + date + " + " + ".join(rules.fallback)

        def told(x: str) -> str:
            return (f"coalesce(r.{x}x || ' ' || {d.money(f'r.{x}c')} || ' ' || coalesce(r.{x}st, 'no status') "
                    f"|| ' on ' || coalesce({d.minute(f'r.{x}t')}, 'no date'), 'none')")

        tolerance = f"{self.p.amount_tolerance:.2f}"
        headline = (
            "CASE r.outcome "
            f"WHEN 'missing_internal' THEN 'Only in the bank / switch file: no ledger row matches it by {tried}' "
            f"WHEN 'missing_external' THEN 'Only in the ledger: no bank / switch row matches it by {tried}' "
            f"WHEN 'amount_mismatch' THEN coalesce(r.detail, 'Amounts differ by ' || {d.money('abs(r.ic - r.ec)')} "
            f"|| ' (tolerance {tolerance}): ledger ' || {d.money('r.ic')} || ', bank ' || {d.money('r.ec')}) "
            "WHEN 'status_mismatch' THEN 'Statuses differ: ledger ' || coalesce(r.ist, 'none') || ', bank ' || "
            "coalesce(r.est, 'none') "
            f"WHEN 'date_drift' THEN 'Dates differ by ' || {d.hours(self.drift('r.it', 'r.et'))} || ' h "
            f"(tolerance {self.p.date_tolerance_hours} h): ledger ' || {d.minute('r.it')} || ', bank ' || "
            f"{d.minute('r.et')} "
            "WHEN 'duplicate' THEN 'The same payment twice: ' || r.detail "
            "WHEN 'reversed' THEN 'Paid, then reversed: ' || coalesce(r.detail, 'a reversal') "
            "ELSE coalesce(r.detail, r.outcome) END"
        )
        return (f"{headline} || '.' || coalesce(' Rule: ' || r.rule || '.', '') || ' Ledger: ' || {told('i')} "
                f"|| '; bank: ' || {told('e')} || '.'")

    def break_key(self) -> str:
        """A break's identity across runs: source, type and both txn ids."""
        return "(:source || '|' || r.outcome || '|' || coalesce(r.ix, '') || '|' || coalesce(r.ex, ''))"

    def write_breaks(self) -> None:
        """Upsert this run's breaks under their stable key; ``run_id`` says which run last changed one."""
        d = self.d
        status = ("CASE WHEN reconciliations.run_id = excluded.run_id THEN reconciliations.status "
                  "WHEN reconciliations.status = 'resolved' THEN 'new' ELSE 'persisting' END")
        self.x(
            "INSERT INTO reconciliations (tenant_id, break_key, source, rule, mismatch_type, internal_txn_id, "
            "external_txn_id, internal_amount, external_amount, internal_time, external_time, internal_status, "
            "external_status, notes, status, run_id, first_run_id, created_at, updated_at) "
            f"SELECT :tenant, {self.break_key()}, "
            f":source, r.rule, r.outcome, r.ix, r.ex, {d.from_cents('r.ic')}, {d.from_cents('r.ec')}, r.it, r.et, "
            f"r.ist, r.est, {self.notes()}, 'new', :run, :run, :now, :now FROM rc_res r "
            f"WHERE r.outcome IN ({self.break_list()}) "
            "ORDER BY r.outcome, coalesce(r.ix, ''), coalesce(r.ex, '') "
            "ON CONFLICT (tenant_id, break_key) DO UPDATE SET "
            f"status = {status}, run_id = excluded.run_id, rule = excluded.rule, notes = excluded.notes, "
            "internal_amount = excluded.internal_amount, external_amount = excluded.external_amount, "
            "internal_time = excluded.internal_time, external_time = excluded.external_time, "
            "internal_status = excluded.internal_status, external_status = excluded.external_status, "
            "updated_at = excluded.updated_at "
            # a break found again as it was is left alone: a run with no new data changes nothing
            f"WHERE {d.differs('reconciliations.status', status)} OR "
            + " OR ".join(d.differs(f"reconciliations.{c}", f"excluded.{c}") for c in CARRIED),
        )

    def resolve_unseen(self) -> int:
        """Breaks of this source and period that this run did not find (again) are resolved; how many."""
        when = "coalesce(internal_time, external_time)"
        return self.x(f"UPDATE reconciliations SET status = 'resolved', run_id = :run, updated_at = :now "
                      "WHERE tenant_id = :tenant AND source = :source AND status <> 'resolved' "
                      f"AND {when} >= :lo AND {when} < :hi AND break_key NOT IN "
                      f"(SELECT {self.break_key()} FROM rc_res r WHERE r.outcome IN ({self.break_list()}))").rowcount
