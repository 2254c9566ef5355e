"""The NEFT / IMPS / RTGS bank statement parser.

A bank statement (a preamble, then ``Date | Narration | Chq./Ref.No. | Withdrawal |
Deposit | Balance``, an opening balance row, a footer) or a bank's NEFT report (a UTR,
IFSC, account and status per row). See :func:`parse`.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import BinaryIO

from app.hooks import ParseContext, RowError, Transaction, parse_table, toolkit

__all__ = ["COLUMNS", "parse"]

#: Each field's header aliases (case-, space- and punctuation-insensitive); the first names it.
COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("Date", "Txn Date", "Tran Date", "Transaction Date", "Posting Date", "Post Date"),
    "time": ("Time", "Txn Time", "Transaction Time"),
    "value_date": ("Value Date", "Value Dt", "Val Date"),
    "narration": ("Narration", "Description", "Particulars", "Transaction Remarks", "Remarks",
                  "Transaction Details"),
    "utr": ("UTR", "UTRNo", "UTR No", "UTR Number"),
    "reference": ("Chq./Ref.No.", "Ref No./Cheque No.", "Cheque No.", "Chq No", "CHQNO",
                  "Cheque Number", "Ref No", "Reference No", "Reference Number"),
    "withdrawal": ("Withdrawal Amt.", "Withdrawal Amount", "Withdrawal Amount (INR)", "Withdrawal",
                   "Withdrawals", "Debit", "Debit Amount", "Debits", "DR", "Dr Amount"),
    "deposit": ("Deposit Amt.", "Deposit Amount", "Deposit Amount (INR)", "Deposit", "Deposits",
                "Credit", "Credit Amount", "Credits", "CR", "Cr Amount"),
    "amount": ("Amount", "Transaction Amount", "Txn Amount", "Amount (INR)", "Amount (Rs.)"),
    "direction": ("Dr/Cr", "Cr/Dr", "Debit/Credit", "Credit/Debit", "D/C", "Type (Dr/Cr)"),
    "balance": ("Balance", "Closing Balance", "BAL", "Balance (INR)", "Running Balance"),
    "ifsc": ("IFSC", "IFSC Code", "Beneficiary IFSC", "Remitter IFSC", "Counterparty IFSC"),
    "account": ("Account No", "Account Number", "Beneficiary Account", "Beneficiary Account No",
                "Remitter Account", "Remitter Account No", "Counterparty Account"),
    "name": ("Beneficiary Name", "Remitter Name", "Counterparty Name", "Counterparty", "Name"),
    "status": ("Status", "Transaction Status", "Txn Status"),
}
#: A file needs a date column, and an amount or withdrawal / deposit columns.
REQUIRED = (("date",), ("amount", "withdrawal", "deposit"))
#: Columns whose dates vote on the file's day/month order.
DATE_FIELDS = ("date", "value_date")
#: Cells that mean "nothing in this column" in a withdrawal / deposit pair.
_NOTHING = frozenset({"", "-", "--", "0", "0.0", "0.00", "nil", "NIL"})


def parse(stream: BinaryIO, context: ParseContext) -> Iterator[Transaction | RowError]:
    """Read a bank statement, yielding each row's :class:`Transaction` or :class:`RowError`.

    Streaming: memory stays flat whatever the file's size (only up to 1,000 rows are
    held while the day/month order of numeric dates is settled; see
    ``toolkit.settle_day_first``). Opening / closing balance, total and footer rows
    are skipped.

    - The UTR comes from a UTR column, else from a reference column when it holds one
      (a cheque number does not), else from the narration (with the IFSC and the
      counterparty's name). ``txn_id`` and ``reference`` are the UTR; a row with none
      (cheque, ATM, charges) gets ``h:`` + SHA-1 of its date, amount, direction,
      narration and balance: stable across re-ingests of the same statement.
    - Withdrawal / deposit columns give the direction; a single amount column gives it
      by its mark (``-``, ``(..)``, ``Dr``, ``Cr``) or a Dr/Cr column; an unmarked amount
      is a credit in a statement (a file with a balance column), unknown otherwise.
    - ``status``: the status column; a statement has none: its rows were posted, so
      ``SUCCESS``.

    Parameters:
      stream: the file's bytes (UTF-8, with or without a BOM).
      context: the time zone of the file's local times.

    Raises:
      SourceFileError: no header in the first 30 rows, a required column missing, not
        UTF-8, broken CSV, or (after the last row, so after its row errors) no valid row.
    """
    return parse_table(stream, context, columns=COLUMNS, required=REQUIRED, date_fields=DATE_FIELDS,
                       build=_transaction)


def _transaction(record: toolkit.Record, *, day_first: bool, where: tzinfo) -> Transaction:
    """The canonical transaction of one row.

    Raises:
      toolkit.BadValue: the row's first problem.
    """
    values = record.values
    txn_time = _when(values, day_first=day_first, where=where)
    amount, direction = _amount(values)
    narration = values.get("narration", "")
    found = toolkit.scan_narration(narration) if narration else toolkit.Narration(None, None, None)
    utr = _utr(values) or found.utr
    ifsc = toolkit.normalise_ifsc(values["ifsc"]) if values.get("ifsc") else found.ifsc
    account = values.get("account") or None
    name = values.get("name") or found.name
    if account:
        counterparty = f"{ifsc}/{account}" if ifsc else account
    else:
        counterparty = name or ifsc
    status = toolkit.parse_status(values["status"]) if "status" in values else "SUCCESS"
    txn_id = utr or toolkit.content_id(
        txn_time.isoformat(), amount, direction, " ".join(narration.split()), _balance(values)
    )
    return Transaction(
        txn_id=txn_id,
        amount=amount,
        status=status,
        txn_time=txn_time,
        direction=direction,
        reference=utr,
        counterparty=counterparty,
        ifsc=ifsc,
        raw_row=record.raw_row,
        line=record.line,
    )


def _when(values: dict[str, str], *, day_first: bool, where: tzinfo) -> datetime:
    if not values["date"]:
        raise toolkit.BadValue("date is empty")
    if values.get("time"):
        local = datetime.combine(
            toolkit.parse_date(values["date"], day_first=day_first),
            toolkit.parse_time(values["time"]),
        )
        return toolkit.to_utc(local, where)
    return toolkit.parse_datetime(values["date"], day_first=day_first, where=where)


def _amount(values: dict[str, str]) -> tuple[Decimal, str | None]:
    """The amount and direction, from withdrawal / deposit columns or one amount column."""
    paid = _side(values, "withdrawal", "DR")
    received = _side(values, "deposit", "CR")
    if paid and received:
        raise toolkit.BadValue("both a withdrawal and a deposit amount")
    if paid or received:
        return (paid or received), ("DR" if paid else "CR")
    if "amount" not in values:
        raise toolkit.BadValue("no withdrawal or deposit amount")
    amount = toolkit.parse_amount(values["amount"])
    if not amount.value:
        raise toolkit.BadValue("amount is zero")
    direction = amount.direction
    if values.get("direction"):
        flag = toolkit.parse_direction(values["direction"])
        if direction and direction != flag:
            raise toolkit.BadValue(f"amount is marked {direction} but the row says {flag}")
        direction = flag
    if direction is None and "balance" in values:
        direction = "CR"
    return amount.value, direction


def _side(values: dict[str, str], column: str, direction: str) -> Decimal | None:
    """The amount in a withdrawal or deposit column, if any."""
    text = values.get(column, "")
    if text in _NOTHING:
        return None
    amount = toolkit.parse_amount(text)
    if amount.direction and amount.direction != direction:
        raise toolkit.BadValue(f"{column} amount {text!r} is marked {amount.direction}")
    return amount.value or None


def _utr(values: dict[str, str]) -> str | None:
    """The UTR of a UTR column, or of a reference column that holds one."""
    if values.get("utr"):
        return toolkit.normalise_utr(values["utr"])
    reference = values.get("reference", "")
    return toolkit.normalise_utr(reference) if toolkit.looks_like_utr(reference) else None


def _balance(values: dict[str, str]) -> str:
    """The balance for a content id: canonical when it reads as an amount."""
    text = values.get("balance", "")
    try:
        amount = toolkit.parse_amount(text)
    except toolkit.BadValue:
        return " ".join(text.split())
    return f"{amount.direction or ''}{amount.value}"
