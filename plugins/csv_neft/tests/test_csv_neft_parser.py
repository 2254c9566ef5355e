"""The NEFT / IMPS / RTGS parser on small fixture files, one messy variant each, and a large one."""
from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app import hooks
from app.hooks import ParseContext, RowError, SourceFileError, Transaction, toolkit

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def neft() -> hooks.Source:
    return hooks.sources(hooks.get_plugin_manager())["NEFT"]


def parse(source: hooks.Source, name: str, **context) -> tuple[list[Transaction], list[RowError]]:
    """Every transaction and row error of a fixture file."""
    with open(FIXTURES / name, "rb") as stream:
        items = list(source.parse(stream, ParseContext(**context)))
    return (
        [item for item in items if isinstance(item, Transaction)],
        [item for item in items if isinstance(item, RowError)],
    )


def ist_midnight(day: int, month: int = 8) -> datetime:
    """Midnight in Asia/Kolkata (UTC+05:30) on a day of 2025, in UTC."""
    return datetime(2025, month, day, tzinfo=UTC) - timedelta(hours=5, minutes=30)


@pytest.mark.parametrize("alias", ["IMPS", "RTGS", "imps"])
def test_aliases_resolve_to_the_neft_parser(neft, alias):
    found = hooks.sources(hooks.get_plugin_manager())
    source = found[alias.upper()]
    assert source is found["NEFT"] and source.plugin == "csv_neft"
    assert source.parse is neft.parse
    assert parse(source, "hdfc_statement.csv") == parse(neft, "hdfc_statement.csv")


def test_an_hdfc_statement(neft):
    rows, errors = parse(neft, "hdfc_statement.csv")
    # The preamble, the opening balance, the statement summary and its figures are not errors.
    assert errors == []
    assert [(t.line, t.amount, t.direction, t.status, t.txn_time) for t in rows] == [
        (7, Decimal("125000.00"), "CR", "SUCCESS", ist_midnight(2)),
        (8, Decimal("48500.00"), "DR", "SUCCESS", ist_midnight(4)),
        (9, Decimal("2499.00"), "DR", "SUCCESS", ist_midnight(9)),
        (10, Decimal("35000.00"), "DR", "SUCCESS", ist_midnight(12)),
        (11, Decimal("500000.00"), "CR", "SUCCESS", ist_midnight(14)),
    ]
    neft_cr, neft_dr, imps, cheque, rtgs = rows
    # The UTR, IFSC and name from the narration alone (the reference column holds zeros).
    assert (neft_cr.txn_id, neft_cr.reference) == ("CITIN52025082917691328",) * 2
    assert (neft_cr.ifsc, neft_cr.counterparty) == ("CITI0000002", "REMITTER")
    assert (neft_dr.txn_id, neft_dr.ifsc, neft_dr.counterparty) == (
        "HDFCN52025080498765432", "SBIN0001234", "SHARMA SUPPLIERS",
    )
    assert rtgs.txn_id == "ICICR52025081400012345"
    assert rtgs.counterparty == "MEGA DISTRIBUTORS PVT LTD"
    # Rows without a UTR get a content id: date, amount, direction, narration, balance.
    assert cheque.txn_id == toolkit.content_id(
        ist_midnight(12).isoformat(), Decimal("35000.00"), "DR",
        "CHQ PAID-MICR CTS-MU-PATEL ENTERPRISES", "289001.00",
    )
    assert imps.txn_id.startswith("h:") and imps.reference is None and imps.ifsc is None
    assert cheque.raw_row["Chq./Ref.No."] == "000145"


def test_content_ids_are_stable_across_re_ingests(neft):
    first, _ = parse(neft, "hdfc_statement.csv")
    again, _ = parse(neft, "hdfc_statement.csv")
    assert [t.txn_id for t in first] == [t.txn_id for t in again]
    assert len({t.txn_id for t in first}) == len(first)


def test_an_sbi_statement_with_bom_crlf_quoted_newline_and_a_repeated_header(neft):
    rows, errors = parse(neft, "sbi_bom_crlf.csv")
    # "Balance B/F" and the header repeated at a page break are skipped.
    assert errors == []
    assert [(t.line, t.amount, t.direction, t.txn_time) for t in rows] == [
        (6, Decimal("12500.00"), "CR", ist_midnight(29)),
        (7, Decimal("100000.00"), "DR", ist_midnight(30)),
        (10, Decimal("2000.00"), "DR", ist_midnight(31)),
    ]
    assert (rows[0].txn_id, rows[0].ifsc, rows[0].counterparty) == (
        "HDFCN52025082900000111", "HDFC0000123", "RAVI KUMAR, PUNE",
    )
    assert rows[1].txn_id == "SBINR52025083000000222"
    assert rows[1].raw_row["Description"] == (
        "TO TRANSFER-RTGS UTR NO: SBINR52025083000000222\r\nOMEGA STEEL--"
    )
    assert rows[2].txn_id.startswith("h:")
    assert next(iter(rows[0].raw_row)) == "Txn Date"


def test_an_axis_statement_with_a_closing_balance_footer(neft):
    rows, errors = parse(neft, "axis_statement.csv")
    assert [(t.line, t.txn_id, t.amount, t.direction) for t in rows] == [
        (3, "UTIBN52025081300", Decimal("76250.50"), "CR"),  # case and spaces normalised
        (4, "KKBKH25226123456", Decimal("1000.00"), "CR"),  # from the narration
    ]
    assert rows[0].txn_time == ist_midnight(13)
    # A mistyped UTR in the reference column is an error; the footer after
    # "CLOSING BALANCE" is not.
    assert [(e.line, e.reason) for e in errors] == [
        (5, "UTR 'AXISN5202508150' is 15 characters, not 16 or 22"),
    ]


def test_one_amount_column_with_dr_cr_marks(neft):
    rows, errors = parse(neft, "single_amount_markers.csv")
    assert errors == []
    assert [(t.amount, t.direction) for t in rows] == [
        (Decimal("125000.00"), "CR"),  # ₹, grouping, Cr
        (Decimal("48500.00"), "DR"),  # Dr
        (Decimal("2499.00"), "DR"),  # negative
        (Decimal("35000.00"), "DR"),  # parentheses
        (Decimal("15000.00"), "CR"),  # unmarked in a statement (it has a balance): a credit
    ]
    # The UTR column is normalised to upper case.
    assert [t.txn_id for t in rows[:2]] == ["CITIN52025082900000001", "HDFCN52025082900000002"]


def test_one_amount_column_with_a_dr_cr_column(neft):
    rows, errors = parse(neft, "amount_drcr_column.csv")
    assert errors == []
    # No balance column: an unmarked amount has no known direction.
    assert [(t.txn_id, t.direction) for t in rows] == [
        ("HDFCN52025082900000003", "DR"),
        ("HDFCN52025082900000004", "CR"),
        ("HDFCN52025082900000005", None),
    ]


def test_a_bank_neft_report_with_status_ifsc_and_12_hour_times(neft):
    rows, errors = parse(neft, "neft_report.csv")
    assert errors == []
    assert [(t.txn_id, t.status, t.ifsc, t.counterparty, t.txn_time) for t in rows] == [
        ("HDFCN52025082912345678", "SUCCESS", "SBIN0001234", "SBIN0001234/30214587961",
         datetime(2025, 8, 29, 8, 33, 11, tzinfo=UTC)),
        ("HDFCR52025082900009876", "PENDING", "YESB0000001", "YESB0000001/00620110004567",
         datetime(2025, 8, 29, 6, 15, tzinfo=UTC)),
        ("HDFCN52025082912345679", "FAILED", "HDFC0001122", "HDFC0001122/50100098765432",
         datetime(2025, 8, 29, 11, 0, tzinfo=UTC)),
    ]
    assert rows[2].raw_row["Status"] == "REJECTED"


def test_month_first_dates_are_settled_by_evidence(neft):
    rows, _ = parse(neft, "month_first.csv")
    assert [t.txn_time for t in rows] == [ist_midnight(5), ist_midnight(11), ist_midnight(30)]


def test_bad_rows_are_row_errors_with_lines_and_reasons(neft):
    rows, errors = parse(neft, "bad_rows.csv")
    assert [(t.line, t.txn_id, t.ifsc) for t in rows] == [
        (2, "CITIN52025082900000010", "CITI0000002"),
        (10, "CITIN52025082900000018", None),  # "citin 5202508290000 0018"
    ]
    assert [(e.line, e.reason) for e in errors] == [
        (3, "UTR 'CITIN520250829000' is 17 characters, not 16 or 22"),
        (4, "IFSC 'CITI000002' is not 4 letters, a 0 and 6 letters or digits"),
        (5, "both a withdrawal and a deposit amount"),
        (6, "no withdrawal or deposit amount"),
        (7, "date is empty"),
        (8, "date '32/08/2025' is not a valid date (read day-first)"),
        (9, "deposit amount '-100.00' is marked DR"),
    ]
    assert errors[0].raw == "29/08/2025,SHORT UTR,CITIN520250829000,CITI0000002,,100.00,200.00"


def test_a_file_without_a_header_is_refused(neft):
    with pytest.raises(SourceFileError, match="^no recognisable header in the first 30 rows$"):
        parse(neft, "no_header.csv")


def test_zero_valid_rows_is_refused_after_the_row_errors(neft):
    with open(FIXTURES / "no_valid_rows.csv", "rb") as stream:
        items = neft.parse(stream, ParseContext())
        assert [(e.line, e.reason) for e in (next(items), next(items))] == [
            (2, "date 'soon' is not in a known layout"),
            (3, "no withdrawal or deposit amount"),
        ]
        with pytest.raises(SourceFileError, match="^no valid rows: all 2 rows have errors$"):
            next(items)


@pytest.mark.parametrize(("name", "count"), [("neft_statement.csv", 12), ("neft_ledger.csv", 7)])
def test_the_examples_parse_without_row_errors(neft, name, count):
    with open(EXAMPLES / name, "rb") as stream:
        items = list(neft.parse(stream, ParseContext(ledger="internal")))
    assert not [item for item in items if isinstance(item, RowError)]
    assert len(items) == count


def test_the_ledger_example_differs_from_the_statement_on_purpose(neft):
    def by_id(name):
        with open(EXAMPLES / name, "rb") as stream:
            return {t.txn_id: t for t in neft.parse(stream, ParseContext()) if t.reference}

    bank, ledger = by_id("neft_statement.csv"), by_id("neft_ledger.csv")
    assert len(bank.keys() - ledger.keys()) == 1 and len(ledger.keys() - bank.keys()) == 1
    both = bank.keys() & ledger.keys()
    assert len([i for i in both if bank[i].amount != ledger[i].amount]) == 1
    statuses = [(bank[i].status, ledger[i].status) for i in both]
    assert [pair for pair in statuses if pair[0] != pair[1]] == [("SUCCESS", "PENDING")]
    assert all(bank[i].direction == ledger[i].direction for i in both)


class GeneratedStream(io.RawIOBase):
    """A byte stream produced by a generator: the file never exists in memory."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            self._left = next(self._chunks, b"")
            if not self._left:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size], self._left = self._left[:size], self._left[size:]
        return size


def statement(rows: int) -> Iterator[bytes]:
    yield b"HDFC BANK Ltd.,,,,,,\r\n,,,,,,\r\n"
    yield b"Date,Narration,Chq./Ref.No.,Value Dt,Withdrawal Amt.,Deposit Amt.,Closing Balance\r\n"
    for n in range(rows):
        day = f"{1 + n % 12:02d}/08/25"  # never proves the order: the look-ahead window fills up
        if n % 2:
            row = (
                f'{day},"NEFT CR-CITI0000002-REMITTER-ACME-CITIN52025{n:013d}",0000000000000000,'
                f'{day},,"1,{n % 100:02d},000.00","9,99,999.00"'
            )
        else:
            row = f"{day},ATW-512345XXXXXX6789-S1ANMU12-MUMBAI,{n:016d},{day},500.00,,{n}.00"
        yield (row + "\r\n").encode()


def test_memory_stays_flat_on_a_large_statement(neft):
    rows = 200_000
    stream = io.BufferedReader(GeneratedStream(statement(rows)))
    tracemalloc.start()
    try:
        items = neft.parse(stream, ParseContext())
        counted = sum(1 for item in items if isinstance(item, Transaction))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counted == rows
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
