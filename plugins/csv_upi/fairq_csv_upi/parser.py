"""The UPI switch / settlement report parser.

One row per UPI transaction: its UPI transaction id and RRN, amount, payer and
payee VPAs, a debit/credit flag, a status (a word or an NPCI response code), the
date and time (one column or two) and, in settlement reports, the settlement date
or cycle. See :func:`parse`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from typing import BinaryIO

from app.hooks import ParseContext, RowError, Transaction, parse_table, stage_table, toolkit

__all__ = ["COLUMNS", "parse", "stage"]

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


def stage(stream: BinaryIO, context: ParseContext) -> Iterator[Transaction | RowError | str]:
    """:func:`parse` for the bulk loader: the same rows, clean ones read by :func:`_fast_rows`."""
    return stage_table(stream, context, columns=COLUMNS, required=REQUIRED, date_fields=DATE_FIELDS,
                       build=_transaction, fast=_fast_rows)


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


#: The clean cells the fast path reads; anything else goes through :func:`_transaction`.
_FAST_AMOUNT = re.compile(r"\d{1,16}(?:\.\d{1,2})?")
_FAST_DATE = re.compile(r"\d\d([-/.])\d\d\1\d{4}")
_HOURS = frozenset(f"{hour:02d}" for hour in range(24))
_SIXTY = frozenset(f"{minute:02d}" for minute in range(60))
#: Entries a fast path's caches hold at most (cleared when full).
_CACHE = 4096


def _fast_rows(index: Mapping[str, int], *, day_first: bool,
               where: tzinfo) -> Callable[[list[str]], tuple | None] | None:
    """The fast row function for a file with this header: :func:`_transaction`'s values as text.

    It reads the common clean layout (one date-time column as ``29/08/2025 14:03:11``, plain
    amounts, clean ids and VPAs, known status words and flags, an optional settlement date)
    and returns ``None`` for anything else, which :func:`_transaction` then reads or rejects.
    """
    if "time" in index or "cycle" in index:
        return None  # two-column times and settlement cycles: the full way
    at_txn, at_rrn = index.get("txn_id"), index.get("rrn")
    at_amount, at_flag = index["amount"], index.get("direction")
    at_payer, at_payee = index.get("payer_vpa"), index.get("payee_vpa")
    at_status, at_code = index.get("status"), index.get("response_code")
    at_date, at_settled = index.get("date"), index.get("settlement_date")
    no_status = at_status is None and at_code is None
    amount_ok, rrn_ok, txn_ok = _FAST_AMOUNT.fullmatch, toolkit.ids.RRN.fullmatch, toolkit.ids.TXN_ID.fullmatch
    vpa_ok, date_ok = toolkit.ids.VPA.fullmatch, _FAST_DATE.fullmatch
    statuses: dict[str, str | None] = {}
    flags: dict[str, str | None] = {}
    vpas: dict[str, str | None] = {}
    days: dict[str, tuple[str, str] | None] = {}
    dates: dict[str, str | None] = {}

    def cached(cache: dict, text: str, read: Callable[[str], str | None]) -> str | None:
        if len(cache) >= _CACHE:
            cache.clear()
        try:
            value = cache[text] = read(text)
        except toolkit.BadValue:
            value = cache[text] = None
        return value

    def vpa(text: str) -> str | None:
        value = text.lower()
        return value if vpa_ok(value) else None

    def local_day(text: str) -> tuple[str, str] | None:
        """``dd-mm-yyyy`` to its ISO date and the zone's UTC offset that day, if one offset holds
        all day (so a local time and the offset name the instant :func:`toolkit.to_utc` gives)."""
        if not date_ok(text):
            return None
        local = datetime.combine(toolkit.parse_date(text, day_first=day_first), time())
        offsets = {(local + timedelta(hours=hour)).replace(tzinfo=where).utcoffset() for hour in range(24)}
        offsets.add((local + timedelta(hours=23, minutes=59, seconds=59)).replace(tzinfo=where).utcoffset())
        if len(offsets) != 1:
            return None
        offset = offsets.pop()
        minutes, seconds = divmod(int(offset.total_seconds()), 60)
        if seconds or offset.microseconds:
            return None
        sign = "-" if minutes < 0 else "+"
        return local.date().isoformat(), f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def row(cells: list[str]) -> tuple | None:
        amount = cells[at_amount].strip()
        if not amount_ok(amount) or not amount.strip("0."):
            return None  # zero, or not a plain number
        rrn = txn_id = None
        if at_rrn is not None and (rrn := cells[at_rrn].strip()):
            if not rrn_ok(rrn):
                return None
        else:
            rrn = None
        if at_txn is not None and (txn_id := cells[at_txn].strip()):
            if not txn_ok(txn_id):
                return None
        else:
            txn_id = rrn
        if txn_id is None:
            return None
        direction = None
        if at_flag is not None and (flag := cells[at_flag].strip()):
            direction = flags[flag] if flag in flags else cached(flags, flag, toolkit.parse_direction)
            if direction is None:
                return None
        payer = payee = None
        if at_payer is not None and (payer := cells[at_payer].strip()):
            payer = vpas[payer] if payer in vpas else cached(vpas, payer, vpa)
            if payer is None:
                return None
        if at_payee is not None and (payee := cells[at_payee].strip()):
            payee = vpas[payee] if payee in vpas else cached(vpas, payee, vpa)
            if payee is None:
                return None
        if no_status:
            status = "SUCCESS"
        else:
            word = (cells[at_status].strip() if at_status is not None else "") or (
                cells[at_code].strip() if at_code is not None else "")
            status = statuses[word] if word in statuses else cached(statuses, word, toolkit.parse_status)
            if status is None:
                return None
        when = None
        if at_date is not None:
            text = cells[at_date].strip()
            if (len(text) != 19 or text[13] != ":" or text[16] != ":" or text[10] != " "
                    or text[11:13] not in _HOURS or text[14:16] not in _SIXTY or text[17:] not in _SIXTY):
                return None
            date_text = text[:10]
            found = days[date_text] if date_text in days else cached(days, date_text, local_day)
            if found is None:
                return None
            when = f"{found[0]} {text[11:]}{found[1]}"
        settled = None
        if at_settled is not None and (day := cells[at_settled].strip()):
            settled = dates[day] if day in dates else cached(
                dates, day, lambda t: toolkit.parse_date(t, day_first=day_first).isoformat())
            if settled is None:
                return None
        counterparty = (payee or payer) if direction == "DR" else (payer or payee)
        return (txn_id, amount, status, when, direction, "INR", rrn, counterparty, None, settled)

    return row
