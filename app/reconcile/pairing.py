"""The phases that pair rows: main key, ties on one side, further keys, fallback, settlements.

Each phase reads and writes the run's temporary tables: ``rc_j`` (the main key's pairs that
are not clean), ``rc_res`` (every outcome with both sides' columns), ``rc_left`` / ``rc_l``
(rows no key paired yet). See :mod:`app.reconcile.engine` for the order and the why.
"""
from __future__ import annotations

from app.reconcile.tuning import HALVES, LOOKUPS, tune, tuned
from app.reconcile.statements import FT, Statements

__all__ = ["Pairing"]

#: The columns the main key's grouping gives a key (its pairs that are not clean are kept in ``rc_j``,
#: with the txn ids of the breaks among them looked up afterwards: carrying them through the
#: grouping cost more).
RC_J = ("iid", "ic", "it", "ist", "eid", "ec", "et", "est", "k", "outcome")
#: The columns of a row no main key paired that the later phases compare, besides those of :data:`RC_J` and
#: the txn id: looked up with the txn ids in the main key's statement (``rc_j`` names them ``i`` / ``e`` + the value).
UNPAIRED = {"reference": "r", "direction": "dir", "counterparty": "cp", "ifsc": "ifsc", "settlement_date": "sd"}


class Pairing(Statements):
    """The pairing phases of a run."""

    def keyed(self, half: int | None = None) -> str:
        """Both sides' rows of the period and margin that hold the main key: one row per key value
        with its outcome (columns :data:`RC_J`).

        A hash aggregation over both ledgers at once (a full outer join by grouping: a key with
        no row on one side has no ``min(id)`` there); for a key held once per side the ``min()``
        of each column is that row's value. One ``count(*)`` with no ``FILTER`` tells a key held
        more than once on a side: more rows than sides with a row (a count per side evaluated the
        side's test twice more a row). The outcome is worked out from the aggregates in the same
        statement level, so that it is worked out once a key.
        ``half`` (0 or 1, PostgreSQL) keeps the keys of that half of the key space only.
        """
        d = self.d
        column = self.key.column
        values = {"k": column}
        for ledger, s in (("internal", "i"), ("external", "e")):
            only = f"FILTER (WHERE ledger = '{ledger}')"
            values.update({f"{s}id": f"min(id) {only}", f"{s}c": d.cents(f"min(amount) {only}"),
                           f"{s}st": f"{d.smallest_text('status')} {only}", f"{s}t": f"min(txn_time) {only}"})
        internal = {name: values[f"i{name}"] for name in ("c", "st", "t")}
        external = {name: values[f"e{name}"] for name in ("c", "st", "t")}
        alone = f"{values['iid']} IS NULL OR {values['eid']} IS NULL"
        values["outcome"] = (
            # a key held more than once goes to the ties phase even with no row on the other side:
            # only one row of a side (its min(id)) goes on as ``left``
            f"CASE WHEN count(*) > 2 OR (count(*) = 2 AND ({alone})) THEN 'multi' WHEN {alone} THEN 'left' "
            f"WHEN {self.window_fails(self.key, internal, external)} THEN 'split' "
            f"ELSE {self.classify(internal, external)} END"
        )
        which = "" if half is None else f"AND hashtext({column}) & 1 = {half} "
        return (f"SELECT {', '.join(f'{values[c]} AS {c}' for c in RC_J)} FROM {FT} "
                "WHERE tenant_id = :tenant AND source = :source AND txn_time >= :wlo AND txn_time < :whi "
                f"AND {column} IS NOT NULL {which}GROUP BY {column}")

    def collapsed(self, half: int) -> str:
        """One half's keys that are not clean pairs, and one row counting its matched pairs.

        The matched row has only ``outcome``, ``n`` (how many pairs) and ``mc`` (their ledger
        cents); the others have ``n`` 1 and ``mc`` NULL.
        """
        keep = ", ".join(f"CASE WHEN g.outcome <> 'matched' THEN g.{c} END AS {c}" for c in RC_J[:-1])
        return (f"SELECT {keep}, g.outcome, count(*) AS n, "
                f"sum(CASE WHEN g.outcome = 'matched' THEN g.ic END) AS mc FROM ({self.keyed(half)}) g "
                f"GROUP BY {', '.join(str(n + 1) for n in range(len(RC_J)))}")

    def named(self, pairs: str) -> str:
        """``pairs`` (columns :data:`RC_J`) with what later steps need of some of their rows, looked up by id.

        ``ix`` and ``ex``, the txn ids, of the breaks among them and of the rows no key paired
        (``left``, ``split``: one row a side at most); of those unpaired rows, the other columns
        the later phases compare too (:data:`UNPAIRED`, ``ir``, ``idir``... for the ledger's row).
        Only those rows are looked up (both sides have one); on PostgreSQL inside each half's
        parallel worker, both halves at once. Each side's rows are looked up in the order of that
        side's ids (sorted first: the index and the table are then read in order, where the
        grouping's hash order jumps about); the sort is forced by ``ORDER BY`` in a subquery, which
        PostgreSQL does not pull up, so ``enable_sort`` being off does not drop it.
        """
        for s in ("i", "e"):
            looked = ", ".join([f"{s}.txn_id AS {s}x"]
                               + [f"{s}.{column} AS {s}{name}" for column, name in UNPAIRED.items()])
            pairs = (f"SELECT p.*, {looked} FROM (SELECT * FROM ({pairs}) q ORDER BY {s}id) p LEFT JOIN {FT} {s} "
                     f"ON {s}.id = CASE WHEN p.outcome IN ({self.break_list()}, 'left', 'split') THEN p.{s}id END")
        return pairs

    def halves(self) -> str:
        """The main key's statement on PostgreSQL: the two halves of the key space, run in parallel
        under :data:`~app.reconcile.tuning.HALVES` (a UNION ALL in FROM: the planner's parallel append
        takes children that are not partial plans only there; a subquery with ``LIMIT`` or ``OFFSET``
        in a half would make the whole serial). Matched pairs are only counted."""
        return f"SELECT * FROM ({self.named(self.collapsed(0))} UNION ALL {self.named(self.collapsed(1))}) h"

    def main_key(self) -> None:
        if self.d.pg:
            with tuned(self.c, HALVES):
                self.x(f"{self.d.temp('rc_j')} {self.halves()}")
            self.matched = self.x("SELECT CAST(coalesce(sum(n), 0) AS BIGINT), coalesce(sum(mc), 0) FROM rc_j "
                                  "WHERE outcome = 'matched'").one()
            self.x("DELETE FROM rc_j WHERE outcome = 'matched'")
            self.analyze("rc_j")
        else:
            self.temp("rc_j", self.named(self.keyed()))
            self.matched = self.x("SELECT count(*), coalesce(sum(ic), 0) FROM rc_j WHERE outcome = 'matched'").one()
            self.x("DELETE FROM rc_j WHERE outcome = 'matched'")
        tune(self.c, LOOKUPS)
        self.temp("rc_res", "SELECT outcome, CAST(:rule AS VARCHAR(64)) AS rule, iid, ix, ic, it, ist, eid, ex, ec, et, "
                            f"est, CAST(NULL AS TEXT) AS detail FROM rc_j WHERE outcome IN ({self.break_list()})",
                  rule=self.key.label)
        # rows without the key never met in the grouping: they go on to the next phases too (looked up
        # there with the rows the ties leave; the unpaired rows of rc_j come with their columns)
        self.temp("rc_left", f"SELECT id, CASE WHEN ledger = 'internal' THEN 'i' ELSE 'e' END AS side FROM {FT} "
                             f"WHERE tenant_id = :tenant AND {self.key.column} IS NULL AND source = :source "
                             "AND txn_time >= :wlo AND txn_time < :whi")
        self.temp("rc_mk", "SELECT k FROM rc_j WHERE outcome = 'multi'")

    def ties(self) -> None:
        """Keys held by more than one row on a side: reversals, duplicates, then the pair."""
        d = self.d
        self.temp("rc_m", f"SELECT CASE WHEN f.ledger = 'internal' THEN 'i' ELSE 'e' END AS side, f.id, m.k, "
                          f"{d.cents('f.amount')} AS c, f.direction AS dir, f.status AS st, f.txn_time AS t, f.txn_id "
                          f"FROM (SELECT k FROM rc_mk ORDER BY k) m JOIN {FT} f ON f.tenant_id = :tenant AND f.{self.key.column} = m.k "
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
        """``rc_l``: the rows no key paired, with what the later phases compare.

        The main key's unpaired rows come from ``rc_j``, whose statement looked them up; the others
        (``rc_left``: rows without the key, the first rows of tied keys left over) are looked up
        here in id order: the order they were loaded in, so one page of the table after the other,
        where the order of ``rc_left`` jumps about.
        """
        grouping = self.p.rules.grouping
        settle = "0"
        if grouping is not None:
            one = "i" if grouping.one == "internal" else "e"
            settle = (f"CASE WHEN l.side = '{one}' AND f.{self.key.column} IS NULL AND f.settlement_date IS NOT NULL "
                      "THEN 1 ELSE 0 END")
        self.x(f"{self.d.temp('rc_l')} SELECT l.side, f.id, f.txn_id, f.reference, {self.d.cents('f.amount')} AS c, "
               "f.status AS st, f.txn_time AS t, f.direction, f.counterparty, f.ifsc, f.settlement_date AS sd, "
               f"{settle} AS settle FROM (SELECT id, side FROM rc_left ORDER BY id) l JOIN {FT} f ON f.id = l.id")
        # the main key's unpaired rows, as its statement looked them up (they hold the key: no settlement row)
        for s in ("i", "e"):
            self.x("INSERT INTO rc_l (side, id, txn_id, reference, c, st, t, direction, counterparty, ifsc, sd, settle) "
                   f"SELECT '{s}', {s}id, {s}x, {s}r, {s}c, {s}st, {s}t, {s}dir, {s}cp, {s}ifsc, {s}sd, 0 FROM rc_j "
                   f"WHERE outcome IN ('left', 'split') AND {s}id IS NOT NULL")
        self.analyze("rc_l")

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
        # the fee: what the ledger books less what the bank shows (the bank side nets it off)
        fee = "(g.total - g.sc)" if many == "i" else "(g.sc - g.total)"
        gross = "g.total" if many == "i" else "g.sc"
        fits = f"{fee} * 10000 <= {gross} * {basis_points} + :tol_cents * 10000 AND {fee} >= -:tol_cents"
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
                 f"|| ': the difference ' || {d.money(fee)} || ' is not a fee of 0 to {grouping.max_fee_percent} %' END "
                 f"FROM rc_g g JOIN rc_l s ON s.id = g.sid WHERE g.rivals > 1 OR NOT ({fits})", rule=rule)

    def unmatched(self) -> None:
        self.res("SELECT CASE WHEN NOT " + self.in_period("l.t") + " THEN 'outside' "
                 "WHEN l.st = 'PENDING' AND l.t > :grace THEN 'pending' "
                 "WHEN l.side = 'i' THEN 'missing_external' ELSE 'missing_internal' END, NULL, "
                 f"{self.one('l', 'l.side')}, NULL FROM rc_l l WHERE {self.not_taken('l.id')}")
