"""The end of a run: its counts and amounts, and its breaks written under their stable key."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from app.reconcile.statements import BREAKS, Statements

__all__ = ["Outcome", "Breaks", "CARRIED"]

#: A break's columns a later run may find changed.
CARRIED = ("rule", "notes", "internal_amount", "external_amount", "internal_time", "external_time",
           "internal_status", "external_status")


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


class Breaks(Statements):
    """Counting a run's outcomes and writing its breaks."""

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

    def write_breaks(self) -> int:
        """Write this run's breaks under their stable key; ``run_id`` says which run last changed one.

        Two statements where an upsert (``INSERT ... ON CONFLICT``) would be one: the breaks seen
        before are updated where they changed, then the new ones inserted. An upsert inserts
        each row speculatively, a step more per row; measured on 99,499 new breaks, the plain
        insert took about two thirds of its time. No other run writes these keys meanwhile: a
        run holds its tenant and source's advisory lock (see :mod:`app.reconcile.engine`).

        Returns:
          How many of the breaks written are ``new``: inserted, or found again after they were
          resolved (counted from the two statements, not by reading the table again).
        """
        d = self.d
        breaks = f"r.outcome IN ({self.break_list()})"
        values = {"rule": "r.rule", "notes": self.notes(), "internal_amount": d.from_cents("r.ic"),
                  "external_amount": d.from_cents("r.ec"), "internal_time": "r.it", "external_time": "r.et",
                  "internal_status": "r.ist", "external_status": "r.est"}
        # a break found again as it was is left alone: a run with no new data changes nothing
        status = ("CASE WHEN reconciliations.run_id = :run THEN reconciliations.status "
                  "WHEN reconciliations.status = 'resolved' THEN 'new' ELSE 'persisting' END")
        changed = " OR ".join([d.differs("reconciliations.status", status)]
                              + [d.differs(f"reconciliations.{c}", values[c]) for c in CARRIED])
        update = (f"UPDATE reconciliations SET status = {status}, run_id = :run, "
                  + ", ".join(f"{c} = {values[c]}" for c in CARRIED)
                  + f", updated_at = :now FROM rc_res r WHERE {breaks} AND reconciliations.tenant_id = :tenant "
                  f"AND reconciliations.break_key = {self.break_key()} AND ({changed}) RETURNING status")
        if d.pg:
            again = self.x(f"WITH u AS ({update}) SELECT count(*) FROM u WHERE status = 'new'").scalar()
        else:
            again = sum(1 for (written,) in self.x(update) if written == "new")
        return again + self.x(
            "INSERT INTO reconciliations (tenant_id, break_key, source, mismatch_type, internal_txn_id, "
            f"external_txn_id, {', '.join(CARRIED)}, status, run_id, first_run_id, created_at, updated_at) "
            f"SELECT :tenant, {self.break_key()}, :source, r.outcome, r.ix, r.ex, "
            f"{', '.join(values[c] for c in CARRIED)}, 'new', :run, :run, :now, :now "
            # sorted before the notes are made (a sort of narrower rows), in the unique index's order:
            # on the one key, byte by byte (no locale rules); the ids follow it on every database
            f"FROM (SELECT * FROM rc_res r WHERE {breaks} ORDER BY {d.bytewise(self.break_key())}) r "
            "WHERE NOT EXISTS (SELECT 1 FROM reconciliations b WHERE b.tenant_id = :tenant "
            f"AND b.break_key = {self.break_key()})"
        ).rowcount

    def resolve_unseen(self) -> int:
        """Breaks of this source and period that this run did not find (again) are resolved; how many."""
        when = "coalesce(internal_time, external_time)"
        return self.x(f"UPDATE reconciliations SET status = 'resolved', run_id = :run, updated_at = :now "
                      "WHERE tenant_id = :tenant AND source = :source AND status <> 'resolved' "
                      # a break this run has just written was found by it: no need to look it up
                      f"AND {when} >= :lo AND {when} < :hi AND ({self.d.differs('run_id', ':run')} "
                      f"OR {self.d.differs('updated_at', ':now')}) AND break_key NOT IN "
                      f"(SELECT {self.break_key()} FROM rc_res r WHERE r.outcome IN ({self.break_list()}))").rowcount
