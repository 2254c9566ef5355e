"""The matching itself: set-based SQL over one tenant's ledger and bank / switch rows.

One run is one transaction of the tenant's scope (row-level security on PostgreSQL), in
phases over temporary tables; no statement runs per row:

1. **Main key** (RRN for UPI, UTR for NEFT): both sides' rows of the period (widened by a
   margin) go through one hash aggregation by the key, a full outer join by grouping (one
   pass over the table where a ``FULL OUTER JOIN`` makes two), and every pair is classified
   in the same statement; only what is not a clean pair is kept, the clean ones are counted.
   On PostgreSQL the key space is split in two halves (``hashtext(key) & 1``) grouped by two
   parallel workers at once, each reading the table. A key held by one row on
   each side is a pair; a key with no partner, or rows without the key, go on to the next
   phases; a key held twice on one side (whether or not the other side has it) goes to phase 2.
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

import sqlalchemy as sa

from app.reconcile.breaks import BREAKS, Breaks, Outcome
from app.reconcile.tuning import LOOKUPS, STATISTICS, TUNING, WORK_MEM, tune
from app.reconcile.pairing import Pairing
from app.reconcile.statements import FALLBACK_COLUMNS, KEY_COLUMNS, Params

__all__ = ["Params", "Outcome", "match", "tune", "PHASES", "WORK_MEM", "TUNING", "LOOKUPS", "KEY_COLUMNS",
           "FALLBACK_COLUMNS"]

logger = logging.getLogger(__name__)

#: The phases, for progress reports.
PHASES = ("main key", "ties", "further keys", "fallback", "settlements", "unmatched", "breaks")
#: Every table a run makes.
TEMP_TABLES = ("rc_j", "rc_res", "rc_left", "rc_mk", "rc_m", "rc_rev", "rc_mr", "rc_l", "rc_c",
               "rc_cu", "rc_amb", "rc_g")


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


class _Run(Pairing, Breaks):
    """One run: the phases in order, then the breaks."""

    def run(self) -> Outcome:
        tune(self.c)
        tune(self.c, STATISTICS)
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
        # new: first found, or found again after it was resolved, by this run (as written)
        new = self.write_breaks()
        resolved = self.resolve_unseen()
        if self.p.stored_before:
            # an earlier attempt of this run stored breaks under its id: those found again as they
            # were are not written again, so the table counts them
            new = self.x("SELECT count(*) FROM reconciliations WHERE tenant_id = :tenant AND run_id = :run "
                         "AND status = 'new'").scalar()
        found = sum(outcome.counts.get(name, 0) for name in BREAKS)
        outcome.lifecycle = {"new": new, "persisting": found - new, "resolved": resolved}
        logger.debug("phase %s: %.3f s", PHASES[-1], time.perf_counter() - started)
        for name in TEMP_TABLES:
            self.x(f"DROP TABLE IF EXISTS {name}")
        return outcome
