"""The UPI switch / settlement report parser.

One row per UPI transaction: its UPI transaction id and RRN, amount, payer and
payee VPAs, a debit/credit flag, a status (a word or an NPCI response code), the
date and time (one column or two) and, in settlement reports, the settlement date
or cycle. See :func:`parse`.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, tzinfo
from typing import BinaryIO

from app.hooks import ParseContext, RowError, Transaction, parse_table, toolkit

__all__ = ["COLUMNS", "parse"]

#: Each field's header aliases (case-, space- and punctuation-insensitive); the first names it.
COLUMNS: dict[str, tuple[str, ...]] = {
    "txn_id": ("UPI Transaction ID", "UPI_TXN_ID", "UPI Request Id", "NPCITxnId", "UPI Txn Id",
               "Transaction ID", "Txn ID"),
    "rrn": ("RRN", "UPI_UPI_RRN", "UPI_RRN", "Cust Ref No", "Customer Reference No",
            "BankReferenceNo", "Bank Reference No"),
    "amount": ("Transaction Amount", "UPI_TXN_AMT", "Amount (Rs.)", "Amount (INR)", "Txn Amount",
               "Amount"),
    "payer_vpa": ("Payer Vpa", "Remitter VPA", "PAYER_VPA", "Payer Virtual Address"),
    "payee_vpa": ("Payee Vpa", "Beneficiary VPA", "PAYEE_VPA", "Payee Virtual Address"),
    "direction": ("DR/CR", "Posting Flag", "CR/DR", "Debit/Credit"),
    "status": ("Status", "Transaction Status", "Txn Status", "UPI_TXN_STATUS"),
    "response_code": ("Response Code", "Resp Code", "RESPCODE", "NPCI Response Code"),
    "date": ("Transaction Date", "Txn Date", "Date", "UPI_TXN_DATE", "Transaction Date Time",
             "Txn Date Time", "Transaction Timestamp", "Timestamp"),
    "time": ("Transaction Time", "Txn Time", "Time", "UPI_TXN_TIME"),
    "settlement_date": ("Settlement Date", "Settlement Dt", "Sett Date", "STL_DATE"),
    "cycle": ("Settlement Cycle", "Cycle", "Sett Cycle", "STL_CYCLE"),
}
#: A file needs an amount column, and a UPI transaction id or an RRN column.
REQUIRED = (("amount",), ("txn_id", "rrn"))
#: Columns whose dates vote on the file's day/month order.
DATE_FIELDS = ("date", "settlement_date")
#: A settlement cycle that carries its date: ``29/08/2025 1C``, ``2025-08-29_C4``.
_CYCLE = re.compile(r"(?P<date>.+?)[\s_-]+(?:\d{1,2}C|C\d{1,2})", re.IGNORECASE)


def parse(stream: BinaryIO, context: ParseContext) -> Iterator[Transaction | RowError]:
    """Read a UPI report, yielding each row's :class:`Transaction` or :class:`RowError`.

    Streaming: memory stays flat whatever the file's size (only up to 1,000 rows are
    held while the day/month order of numeric dates is settled; see
    ``toolkit.settle_day_first``).

    - ``txn_id`` is the UPI transaction id, else the RRN (a row with neither is an error);
      ``reference`` is the RRN.
    - ``direction`` comes from the DR/CR column or the amount's own mark (``-``, ``Dr``,
      ``Cr``); ``counterparty`` is the payee's VPA on a debit, else the payer's.
    - ``status``: the status column, else the response code; a file with neither is a
      settlement of posted payments, so ``SUCCESS``.

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
    amount = toolkit.parse_amount(values["amount"])
    if not amount.value:
        raise toolkit.BadValue("amount is zero")
    direction = _direction(values.get("direction", ""), amount)
    rrn = toolkit.normalise_rrn(values["rrn"]) if values.get("rrn") else None
    txn_id = toolkit.normalise_txn_id(values["txn_id"]) if values.get("txn_id") else rrn
    if txn_id is None:
        raise toolkit.BadValue("no UPI transaction id and no RRN")
    payer = toolkit.normalise_vpa(values["payer_vpa"]) if values.get("payer_vpa") else None
    payee = toolkit.normalise_vpa(values["payee_vpa"]) if values.get("payee_vpa") else None
    return Transaction(
        txn_id=txn_id,
        amount=amount.value,
        status=_status(values),
        txn_time=_when(values, day_first=day_first, where=where),
        direction=direction,
        reference=rrn,
        counterparty=(payee or payer) if direction == "DR" else (payer or payee),
        settlement_date=_settlement_date(values, day_first=day_first),
        raw_row=record.raw_row,
        line=record.line,
    )


def _direction(flag: str, amount: toolkit.Amount) -> str | None:
    if not flag:
        return amount.direction
    direction = toolkit.parse_direction(flag)
    if amount.direction and amount.direction != direction:
        raise toolkit.BadValue(f"amount is marked {amount.direction} but the row says {flag!r}")
    return direction


def _status(values: dict[str, str]) -> str:
    if "status" not in values and "response_code" not in values:
        return "SUCCESS"
    return toolkit.parse_status(values.get("status") or values.get("response_code", ""))


def _when(values: dict[str, str], *, day_first: bool, where: tzinfo) -> datetime | None:
    if "date" not in values:
        return None
    if not values["date"]:
        raise toolkit.BadValue("date is empty")
    if values.get("time"):
        local = datetime.combine(
            toolkit.parse_date(values["date"], day_first=day_first),
            toolkit.parse_time(values["time"]),
        )
        return toolkit.to_utc(local, where)
    return toolkit.parse_datetime(values["date"], day_first=day_first, where=where)


def _settlement_date(values: dict[str, str], *, day_first: bool) -> date | None:
    cycle = _CYCLE.fullmatch(values.get("cycle", ""))
    text = values.get("settlement_date") or (cycle["date"] if cycle else "")
    try:
        return toolkit.parse_date(text, day_first=day_first) if text else None
    except toolkit.BadValue as problem:
        raise toolkit.BadValue(f"settlement {problem}") from None
