"""Generate UPI transaction files: N rows, seeded, clean or messy, with an optional internal ledger.

    python3 bench/gen_transactions.py 1000000 -o /tmp/upi_1m.csv              # clean switch report
    python3 bench/gen_transactions.py 5000 --messy -o upi_messy.csv            # bank-export mess
    python3 bench/gen_transactions.py 5000 -o upi.csv --ledger ledger.csv --breaks 0.02
    python3 bench/gen_transactions.py 100000 --reconcile /tmp/recon             # both ledgers, every outcome

The same seed gives the same bytes. The clean layout is a UPI switch report
(``UPI Transaction ID, RRN, Transaction Amount, ...``); ``--messy`` adds what
real exports carry: a UTF-8 BOM, CRLF, a preamble above the header, Indian digit
grouping in quoted amounts, ``₹`` marks, NPCI response codes in place of words,
blank lines, a few bad rows and a total row. ``--ledger`` also writes the
tenant's own ledger of the same payments (the ``upi_ledger.csv`` layout) with
breaks injected for reconciliation: a missing row, an amount or status that
differs, a row only the ledger has; ``--breaks-out`` lists them as JSON.
``--reconcile DIR`` writes both ledgers already in ``fintech_transactions``' canonical
columns (``internal.tsv``, ``external.tsv``, for ``COPY``) with a break of every outcome
reconciliation reports injected at ``--breaks`` of the payments each, and the breaks
expected (``breaks.json``): see :func:`reconciliation_rows`.

Memory stays flat: rows are written as they are made.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

__all__ = ["Payment", "payments", "write_switch_report", "write_ledger", "CanonicalRow", "OUTCOMES",
           "reconciliation_rows", "write_reconciliation", "main"]

#: The columns of the clean switch report (what ``examples/upi_sample.csv`` uses).
SWITCH_HEADER = ("UPI Transaction ID,RRN,Transaction Amount,Payer Vpa,Payee Vpa,DR/CR,Status,"
                 "Response Code,Transaction Date,Settlement Date")
#: The columns of the internal ledger export (``examples/upi_ledger.csv``).
LEDGER_HEADER = ("Order ID,UPI Txn ID,RRN,Amount (INR),Remitter VPA,Beneficiary VPA,Posting Flag,"
                 "Txn Status,Txn Date,Txn Time")
#: Payment apps' handles, for VPAs.
HANDLES = ("okhdfcbank", "okicici", "oksbi", "okaxis", "ybl", "paytm", "ibl", "apl", "upi")
#: Status word, NPCI response code; weights below.
STATUSES = (("SUCCESS", "00"), ("FAILED", "U30"), ("FAILED", "U69"), ("PENDING", "01"), ("DEEMED", "RB"))
STATUS_WEIGHTS = (90, 4, 2, 2, 2)
#: The merchant whose report this is.
MERCHANT = "acmeretail@okhdfcbank"


@dataclass(frozen=True, slots=True)
class Payment:
    """One generated payment, as the switch saw it."""

    txn_id: str
    rrn: str
    amount: Decimal
    payer: str
    payee: str
    direction: str
    status: str
    code: str
    when: datetime


def payments(n: int, *, seed: int = 42, start: datetime = datetime(2025, 8, 1, 9, 0)) -> Iterator[Payment]:
    """``n`` payments, the same ones for the same seed; unique transaction ids and RRNs."""
    rng = random.Random(seed)
    when = start
    for number in range(n):
        when += timedelta(seconds=rng.randint(1, 20))
        credit = rng.random() < 0.85
        other = f"user{rng.randrange(10**6)}@{rng.choice(HANDLES)}"
        status, code = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        cents = rng.choice((rng.randint(100, 99_999), rng.randint(100, 9_999_999), rng.randint(100, 20_000)))
        yield Payment(
            # the sequence number keeps ids unique whatever the random draw
            txn_id=f"HDF{number:010X}{rng.getrandbits(88):022X}",
            rrn=f"5{number % 10**11:011d}",
            amount=Decimal(cents) / 100,
            payer=other if credit else MERCHANT,
            payee=MERCHANT if credit else other,
            direction="CR" if credit else "DR",
            status=status,
            code=code,
            when=when,
        )


def _indian(amount: Decimal) -> str:
    """``123456.78`` → ``1,23,456.78``."""
    whole, fraction = f"{amount:.2f}".split(".")
    head, tail = whole[:-3], whole[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return ",".join([*groups, tail]) + "." + fraction if groups else f"{tail}.{fraction}"


def write_switch_report(out: TextIO, rows: Iterator[Payment], *, messy: bool = False, seed: int = 42) -> int:
    """Write a switch report; returns the rows written (bad rows included)."""
    rng = random.Random(seed + 1)
    newline = "\r\n" if messy else "\n"
    if messy:
        out.write("\ufeffAcme Retail Pvt Ltd - UPI Switch Report" + newline)
        out.write(f"Merchant VPA: {MERCHANT},,Report date: 31-08-2025" + newline + newline)
    out.write(SWITCH_HEADER + newline)
    written = 0
    total = Decimal(0)
    for payment in rows:
        amount = f"{payment.amount:.2f}"
        status = payment.status
        if messy:
            amount = rng.choice((f'"{_indian(payment.amount)}"', amount, f'"₹{_indian(payment.amount)}"'))
            status = rng.choice((status, status.lower(), ""))  # a blank status: the code says it
            if rng.random() < 0.002:
                amount = "abc"  # a bad row, recorded as rejected
            if rng.random() < 0.001:
                out.write(newline)
        settled = (payment.when + timedelta(days=1)).strftime("%d-%m-%Y") if payment.status == "SUCCESS" else ""
        out.write(
            f"{payment.txn_id},{payment.rrn},{amount},{payment.payer},{payment.payee},{payment.direction},"
            f"{status},{payment.code},{payment.when:%d-%m-%Y %H:%M:%S},{settled}{newline}"
        )
        total += payment.amount
        written += 1
    if messy:
        out.write(f'{newline}Total,,"{_indian(total)}"{newline}')
    return written


def write_ledger(
    out: TextIO, rows: Iterator[Payment], *, breaks: float = 0.0, seed: int = 42
) -> tuple[int, list[dict]]:
    """Write the tenant's internal ledger of the same payments, with breaks injected.

    Returns:
      The rows written, and each injected break: ``{"kind", "txn_id", ...}``.
    """
    rng = random.Random(seed + 2)
    out.write(LEDGER_HEADER + "\n")
    written = 0
    injected: list[dict] = []
    for number, payment in enumerate(rows):
        amount, status = payment.amount, payment.status
        if rng.random() < breaks:
            kind = rng.choice(("missing_in_ledger", "amount_mismatch", "status_mismatch", "ledger_only"))
            injected.append({"kind": kind, "txn_id": payment.txn_id, "rrn": payment.rrn})
            if kind == "missing_in_ledger":
                continue
            if kind == "amount_mismatch":
                amount = amount + Decimal("1.00")
                injected[-1]["ledger_amount"] = str(amount)
            elif kind == "status_mismatch":
                status = "FAILED" if status == "SUCCESS" else "SUCCESS"
            elif kind == "ledger_only":
                extra = f"ORD-X{number:08d}"
                out.write(f"{extra},LED{number:032X},9{number % 10**11:011d},{amount:.2f},{payment.payer},"
                          f"{payment.payee},C,SUCCESS,{payment.when:%Y-%m-%d},{payment.when:%H:%M:%S}\n")
                injected[-1]["txn_id"] = f"LED{number:032X}"
                written += 1
                amount, status = payment.amount, payment.status
        flag = "C" if payment.direction == "CR" else "D"
        out.write(f"ORD-{number:08d},{payment.txn_id},{payment.rrn},{amount:.2f},{payment.payer},"
                  f"{payment.payee},{flag},{status},{payment.when:%Y-%m-%d},{payment.when:%H:%M:%S}\n")
        written += 1
    return written, injected


#: The outcomes :func:`reconciliation_rows` injects, each at the ``breaks`` share of payments.
OUTCOMES = ("missing_internal", "missing_external", "amount_mismatch", "status_mismatch", "date_drift",
            "duplicate", "reversed", "ambiguous")
#: The columns of :func:`write_reconciliation`'s files, as ``COPY`` takes them.
CANONICAL_COLUMNS = ("ledger", "txn_id", "amount", "status", "txn_time", "direction", "reference", "counterparty",
                     "raw_row", "line")
_IST = ZoneInfo("Asia/Kolkata")
_CANONICAL_STATUS = {"SUCCESS": "SUCCESS", "FAILED": "FAILED", "PENDING": "PENDING", "DEEMED": "PENDING"}


@dataclass(frozen=True, slots=True)
class CanonicalRow:
    """One row of ``fintech_transactions`` as a source plugin would have loaded it (UTC times)."""

    ledger: str
    txn_id: str
    amount: Decimal
    status: str
    when: datetime
    direction: str
    reference: str | None
    counterparty: str

    def copy_line(self, line: int) -> str:
        raw = json.dumps({"UPI Transaction ID": self.txn_id, "RRN": self.reference or "", "Amount": f"{self.amount:.2f}",
                          "Status": self.status, "DR/CR": self.direction, "Counterparty": self.counterparty,
                          "Transaction Date": f"{self.when.astimezone(_IST):%d-%m-%Y %H:%M:%S}"})
        return "\t".join((self.ledger, self.txn_id, f"{self.amount:.2f}", self.status, self.when.isoformat(),
                          self.direction, self.reference or "\\N", self.counterparty,
                          raw.replace("\\", "\\\\"), str(line))) + "\n"


def reconciliation_rows(n: int, *, breaks: float = 0.01, seed: int = 42) -> tuple[Iterator[CanonicalRow], list[dict]]:
    """Both ledgers of ``n`` payments, with ``breaks`` of them broken for each outcome.

    Each payment is in both ledgers (same UPI transaction id, RRN, amount, status, time), but
    for the injected ones, chosen at random (seeded), each outcome at the ``breaks`` share:

    - ``missing_internal`` / ``missing_external``: the ledger / the bank file lacks it;
    - ``amount_mismatch``: the ledger says 1.00 more; ``status_mismatch``: another status;
    - ``date_drift``: the ledger's time is 72 hours later (the benchmark's tolerance: 48);
    - ``duplicate``: the ledger books it twice (a second id, the same RRN, an hour later);
    - ``reversed``: the bank file also holds its reversal (the same RRN, the other direction,
      a day later), which the ledger lacks;
    - ``ambiguous``: the ledger row has no RRN and its own order id, and the bank file holds a
      second payment of the same amount from the same counterparty an hour apart: three
      ambiguous rows (the ledger's and both of the bank's).

    Returns:
      The rows (a generator), and the list of expected breaks, complete once the rows are
      consumed: ``{"type", "internal_txn_id", "external_txn_id"}`` each.
    """
    rng = random.Random(seed + 3)
    expected: list[dict] = []

    def expect(kind: str, internal: str | None, external: str | None) -> None:
        expected.append({"type": kind, "internal_txn_id": internal, "external_txn_id": external})

    def rows() -> Iterator[CanonicalRow]:
        for number, p in enumerate(payments(n, seed=seed)):
            when = p.when.replace(tzinfo=_IST).astimezone(UTC)
            status = _CANONICAL_STATUS[p.status]
            other = p.payer if p.direction == "CR" else p.payee
            bank = CanonicalRow("external", p.txn_id, p.amount, status, when, p.direction, p.rrn, other)
            ours = bank.__class__("internal", *[getattr(bank, f) for f in bank.__slots__[1:]])
            kind = rng.choice(OUTCOMES) if rng.random() < breaks * len(OUTCOMES) else None
            if kind == "missing_internal":
                expect(kind, None, p.txn_id)
                yield bank
                continue
            if kind == "missing_external":
                expect(kind, p.txn_id, None)
                yield ours
                continue
            if kind == "amount_mismatch":
                ours = _with(ours, amount=p.amount + Decimal("1.00"))
            elif kind == "status_mismatch":
                ours = _with(ours, status="PENDING" if status == "SUCCESS" else "SUCCESS")
            elif kind == "date_drift":
                ours = _with(ours, when=when + timedelta(hours=72))
            elif kind == "duplicate":
                yield _with(ours, txn_id=f"DUP{number:010d}", when=when + timedelta(hours=1))
                expect(kind, f"DUP{number:010d}", None)
                kind = None  # the first booking pairs with the bank's
            elif kind == "reversed":
                reverse = "DR" if p.direction == "CR" else "CR"
                yield _with(bank, txn_id=f"REV{number:010d}", direction=reverse, when=when + timedelta(days=1))
            elif kind == "ambiguous":
                ours = _with(ours, txn_id=f"ORD{number:010d}", reference=None)
                twin = _with(bank, txn_id=f"TWN{number:010d}", reference=f"9{number % 10**11:011d}",
                             when=when + timedelta(hours=1))
                yield twin
                expect(kind, None, twin.txn_id)
                expect(kind, ours.txn_id, None)
                expect(kind, None, p.txn_id)
                kind = None
            if kind is not None:
                expect(kind, ours.txn_id, bank.txn_id)
            yield ours
            yield bank

    return rows(), expected


def _with(row: CanonicalRow, **changes) -> CanonicalRow:
    values = {name: getattr(row, name) for name in row.__slots__}
    return CanonicalRow(**{**values, **changes})


def write_reconciliation(folder: Path, n: int, *, breaks: float = 0.01, seed: int = 42) -> tuple[int, int, list[dict]]:
    """``internal.tsv`` and ``external.tsv`` (``COPY`` text, :data:`CANONICAL_COLUMNS`) and ``breaks.json``.

    Returns:
      The rows written to each, and the expected breaks.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows, expected = reconciliation_rows(n, breaks=breaks, seed=seed)
    counts = {"internal": 0, "external": 0}
    with (folder / "internal.tsv").open("w", encoding="utf-8") as internal, \
            (folder / "external.tsv").open("w", encoding="utf-8") as external:
        out = {"internal": internal, "external": external}
        for row in rows:
            counts[row.ledger] += 1
            out[row.ledger].write(row.copy_line(counts[row.ledger]))
    (folder / "breaks.json").write_text(json.dumps(expected))
    return counts["internal"], counts["external"], expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=int, help="payments to generate")
    parser.add_argument("-o", "--output", type=Path, help="the switch report (default: stdout)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--messy", action="store_true", help="BOM, CRLF, preamble, grouping, bad rows, total")
    parser.add_argument("--ledger", type=Path, help="also write the internal ledger of the same payments here")
    parser.add_argument("--breaks", type=float, default=0.01, help="share of ledger rows with a break")
    parser.add_argument("--breaks-out", type=Path, help="write the injected breaks here as JSON")
    parser.add_argument("--reconcile", type=Path, metavar="DIR",
                        help="write both ledgers in canonical columns for COPY, every outcome injected, to DIR")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("rows must be 0 or more")
    if args.reconcile:
        internal, external, expected = write_reconciliation(args.reconcile, args.rows, breaks=args.breaks,
                                                            seed=args.seed)
        print(f"{internal} internal, {external} external rows, {len(expected)} breaks -> {args.reconcile}",
              file=sys.stderr)
        return 0

    out = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        written = write_switch_report(out, payments(args.rows, seed=args.seed), messy=args.messy, seed=args.seed)
    finally:
        if args.output:
            out.close()
    print(f"{written} rows -> {args.output or 'stdout'}", file=sys.stderr)
    if args.ledger:
        with args.ledger.open("w", encoding="utf-8", newline="") as ledger:
            count, injected = write_ledger(ledger, payments(args.rows, seed=args.seed),
                                           breaks=args.breaks, seed=args.seed)
        print(f"{count} ledger rows, {len(injected)} breaks -> {args.ledger}", file=sys.stderr)
        if args.breaks_out:
            args.breaks_out.write_text(json.dumps(injected, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
