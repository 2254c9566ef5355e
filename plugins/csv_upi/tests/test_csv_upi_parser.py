"""The UPI parser on small fixture files, one messy variant each, and on a large generated one."""
from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app import hooks
from app.hooks import ParseContext, RowError, SourceFileError, Transaction

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture(scope="module")
def upi() -> hooks.Source:
    return hooks.sources(hooks.get_plugin_manager())["UPI"]


def parse(source: hooks.Source, name: str, **context) -> tuple[list[Transaction], list[RowError]]:
    """Every transaction and row error of a fixture file."""
    with open(FIXTURES / name, "rb") as stream:
        items = list(source.parse(stream, ParseContext(**context)))
    return (
        [item for item in items if isinstance(item, Transaction)],
        [item for item in items if isinstance(item, RowError)],
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_registered_source_has_the_parser(upi):
    from fairq_csv_upi.parser import parse as upi_parse

    assert upi.parse is upi_parse


def test_a_switch_report(upi):
    rows, errors = parse(upi, "switch_report.csv")
    assert errors == []
    assert [(t.line, t.txn_id, t.amount, t.direction, t.status) for t in rows] == [
        (2, "AXI8f2c01d5e6a94b7c9d0e1f2a3b4c5d601", Decimal("1500.00"), "CR", "SUCCESS"),
        (3, "AXI8f2c01d5e6a94b7c9d0e1f2a3b4c5d602", Decimal("250.50"), "CR", "FAILED"),
        (4, "AXI8f2c01d5e6a94b7c9d0e1f2a3b4c5d603", Decimal("99.00"), "DR", "PENDING"),
        (5, "AXI8f2c01d5e6a94b7c9d0e1f2a3b4c5d604", Decimal("1000.00"), "CR", "PENDING"),
    ]
    first, _, debit, last = rows
    # Local times are Asia/Kolkata (UTC+05:30); the transaction time is aware UTC.
    assert first.txn_time == utc(2025, 8, 29, 4, 45, 32)
    assert last.txn_time == utc(2025, 8, 29, 18, 29, 59)
    assert first.reference == "524112345601" and first.currency == "INR"
    # The counterparty is the payer of a credit and the payee (lower-cased) of a debit.
    assert first.counterparty == "ravi@okaxis"
    assert debit.counterparty == "anil@oksbi"
    assert first.settlement_date is None and first.ifsc is None
    assert dict(first.raw_row) == {
        "UPI Transaction ID": "AXI8f2c01d5e6a94b7c9d0e1f2a3b4c5d601",
        "RRN": "524112345601",
        "Transaction Amount": "1500.00",
        "Payer Vpa": "ravi@okaxis",
        "Payee Vpa": "shop@okhdfcbank",
        "DR/CR": "CR",
        "Status": "S",
        "Transaction Date": "29/08/2025 10:15:32",
    }


def test_the_context_time_zone_is_used(upi):
    rows, _ = parse(upi, "switch_report.csv", timezone="UTC")
    assert rows[0].txn_time == utc(2025, 8, 29, 10, 15, 32)


def test_a_bad_time_zone_is_a_file_error(upi):
    with pytest.raises(SourceFileError, match="unknown time zone 'Mars/Olympus'"):
        parse(upi, "switch_report.csv", timezone="Mars/Olympus")


def test_bom_crlf_aliases_and_trailing_blank_lines(upi):
    rows, errors = parse(upi, "bom_crlf_aliases.csv")
    assert errors == []
    assert [(t.line, t.status, t.direction, t.counterparty) for t in rows] == [
        (2, "SUCCESS", "CR", "ravi@okaxis"),
        (3, "FAILED", "CR", "priya@ybl"),
        (4, "PENDING", "CR", "anil@oksbi"),  # Deemed stays pending
        (5, "PENDING", "DR", "supplier@okicici"),
    ]
    assert rows[0].txn_id == "YBL0a1b2c3d4e5f60718293a4b5c6d7e8f901"
    assert rows[0].reference == "524198765401"
    assert rows[0].txn_time == utc(2025, 8, 29, 4, 45, 32)
    assert rows[0].settlement_date == date(2025, 8, 30)
    assert rows[1].settlement_date is None
    # The byte order mark is not part of the first header name; the original status is kept.
    assert next(iter(rows[0].raw_row)) == "UPI_TXN_ID"
    assert rows[2].raw_row["UPI_TXN_STATUS"] == "Deemed"


def test_a_settlement_report_below_a_preamble(upi):
    rows, errors = parse(upi, "settlement_preamble.csv")
    # Preamble, the "Total" row and the "End of report" note are not errors.
    assert errors == []
    assert [(t.line, t.amount, t.status, t.settlement_date) for t in rows] == [
        (6, Decimal("1250.00"), "SUCCESS", date(2025, 8, 30)),
        (7, Decimal("640.00"), "PENDING", date(2025, 8, 30)),
        (8, Decimal("99.00"), "FAILED", None),
    ]
    # Date and time in two columns, 24-hour and 12-hour.
    assert [t.txn_time for t in rows] == [
        utc(2025, 8, 29, 4, 45, 32),
        utc(2025, 8, 29, 8, 33, 11),
        utc(2025, 8, 29, 18, 29, 59),
    ]
    assert rows[1].raw_row["Response Code"] == "RB"
    assert rows[0].direction is None


def test_quoted_newlines_keep_physical_line_numbers(upi):
    rows, errors = parse(upi, "quoted_newline.csv")
    assert [t.line for t in rows] == [2, 4, 9]
    assert rows[0].raw_row["Remarks"] == "Refund for order 1123, part 1\nsecond line"
    assert rows[2].raw_row["Remarks"] == 'a "quoted" word'
    assert [(e.line, e.reason) for e in errors] == [
        (5, "RRN '52417770003' is not 12 digits"),
        (6, "VPA 'meena.paytm' is not of the form name@handle"),
    ]
    # The raw text is the row as written, over its three lines.
    assert errors[1].raw == (
        "PTM3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f804,524177700004,800.00,meena.paytm,shop@paytm,"
        '"bad VPA, and\na remark over\nthree lines",SUCCESS,29/08/2025 09:15:00'
    )


def test_messy_amounts(upi):
    rows, errors = parse(upi, "messy_amounts.csv")
    assert errors == []
    assert [(t.amount, t.direction) for t in rows] == [
        (Decimal("123456.78"), None),  # ₹ and Indian grouping
        (Decimal("2500.00"), None),  # INR
        (Decimal("100000.00"), "CR"),  # Rs. and the DR/CR column
        (Decimal("1234.50"), "CR"),  # a Cr suffix
        (Decimal("750.00"), "DR"),  # parentheses
        (Decimal("320.10"), "DR"),  # a negative debit
        (Decimal("1234567.00"), "DR"),  # ₹, grouping and a Dr suffix
        (Decimal("10.50"), None),  # zeros past two decimals
        (Decimal("123456.00"), None),  # Western grouping
    ]
    assert all(type(t.amount) is Decimal and t.amount.as_tuple().exponent == -2 for t in rows)
    # A date without a time is local midnight.
    assert rows[0].txn_time == utc(2025, 8, 28, 18, 30)


def test_status_from_npci_response_codes(upi):
    rows, errors = parse(upi, "response_codes.csv")
    assert errors == []
    assert [(t.raw_row["Response Code"], t.status) for t in rows] == [
        ("00", "SUCCESS"),
        ("01", "PENDING"),
        ("RB", "PENDING"),
        ("U69", "FAILED"),
        ("u30", "FAILED"),
        ("ZM", "FAILED"),
        ("RB", "PENDING"),
        ("00", "SUCCESS"),
    ]


def test_month_first_dates_are_settled_by_evidence(upi):
    # Given dates that are ambiguous until 08/29/2025 on the fourth row,
    rows, errors = parse(upi, "month_first.csv")
    # then every date, the earlier ones too, is read month-first.
    assert errors == []
    assert [t.txn_time.date() for t in rows] == [
        date(2025, 8, 5), date(2025, 8, 7), date(2025, 8, 12), date(2025, 8, 29), date(2025, 9, 1),
    ]


def test_ambiguous_dates_default_to_day_first(upi):
    rows, _ = parse(upi, "ambiguous_dates.csv")
    assert [t.txn_time.date() for t in rows] == [date(2025, 8, 5), date(2025, 8, 7)]


def test_bad_rows_are_row_errors_with_lines_and_reasons(upi):
    rows, errors = parse(upi, "bad_rows.csv")
    assert [(t.line, t.txn_id) for t in rows] == [
        (2, "BAD000000000000000000000000000000001"),
        (17, "524188800016"),  # no transaction id: the RRN is the id
    ]
    assert [(e.line, e.reason) for e in errors] == [
        (3, "RRN '52418880002' is not 12 digits"),
        (4, "RRN '5.24189E+11' was mangled by a spreadsheet (scientific notation)"),
        (5, "VPA 'ravi.okaxis' is not of the form name@handle"),
        (6, "amount is empty"),
        (7, "amount '12.345' has more than 2 decimal places"),
        (8, "amount '99999999999999999.00' is larger than NUMERIC(18,2) holds"),
        (9, "date '31/02/2025 10:00:00' is not a valid date (read day-first)"),
        (10, "date 'yesterday' is not in a known layout"),
        (11, "status 'MAYBE' is not a known status"),
        (12, "no UPI transaction id and no RRN"),
        (13, "debit/credit flag 'X' is neither DR nor CR"),
        (14, "amount is zero"),
        (15, "amount is marked DR but the row says 'CR'"),
        (16, "date '08/29/2025 10:00:00' is not a valid date (read day-first)"),
    ]
    assert errors[0].raw.startswith("BAD000000000000000000000000000000002,52418880002,")


def test_a_file_without_a_header_is_refused(upi):
    with pytest.raises(SourceFileError, match="^no recognisable header in the first 30 rows$"):
        parse(upi, "no_header.csv")


def test_a_header_without_an_amount_column_is_refused(upi):
    with pytest.raises(SourceFileError, match="on line 1 has no column for 'Transaction Amount'"):
        parse(upi, "missing_amount_column.csv")


def test_zero_valid_rows_is_refused_after_the_row_errors(upi):
    with open(FIXTURES / "no_valid_rows.csv", "rb") as stream:
        items = upi.parse(stream, ParseContext())
        assert [e.line for e in (next(items), next(items))] == [2, 3]
        with pytest.raises(SourceFileError, match="^no valid rows: all 2 rows have errors$"):
            next(items)


def test_a_header_without_rows_is_refused(upi):
    stream = io.BytesIO(b"Acme UPI report\nRRN,Amount,Date\n\n")
    with pytest.raises(SourceFileError, match="^no valid rows: a header but no data$"):
        list(upi.parse(stream, ParseContext()))


def test_a_file_that_is_not_utf8_is_refused_at_its_line(upi):
    # Given a Windows-1252 pound sign on line 3,
    stream = io.BytesIO(
        b"RRN,Amount,Date\n524112345601,1.00,29/08/2025\n524112345602,\xa3 1,29/08/2025\n"
    )
    items = upi.parse(stream, ParseContext())
    # then the rows before it are read, and the file is refused there.
    assert next(items).txn_id == "524112345601"
    with pytest.raises(SourceFileError, match=r"^line 3: the file is not UTF-8 text \(byte 0xA3\)"):
        next(items)


@pytest.mark.parametrize("name", ["upi_sample.csv", "upi_ledger.csv"])
def test_the_examples_parse_without_row_errors(upi, name):
    with open(EXAMPLES / name, "rb") as stream:
        items = list(upi.parse(stream, ParseContext(ledger="internal")))
    assert not [item for item in items if isinstance(item, RowError)]
    assert len(items) == 20
    assert {item.status for item in items} == {"SUCCESS", "FAILED", "PENDING"}


def test_the_ledger_example_differs_from_the_switch_report_on_purpose(upi):
    def by_id(name):
        with open(EXAMPLES / name, "rb") as stream:
            return {t.txn_id: t for t in upi.parse(stream, ParseContext())}

    switch, ledger = by_id("upi_sample.csv"), by_id("upi_ledger.csv")
    assert len(switch.keys() - ledger.keys()) == 1 and len(ledger.keys() - switch.keys()) == 1
    both = switch.keys() & ledger.keys()
    assert len([i for i in both if switch[i].amount != ledger[i].amount]) == 1
    statuses = [(switch[i].status, ledger[i].status) for i in both]
    assert [pair for pair in statuses if pair[0] != pair[1]] == [("PENDING", "SUCCESS")]


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


def upi_report(rows: int) -> Iterator[bytes]:
    yield b"\xef\xbb\xbfUPI Transaction ID,RRN,Transaction Amount,Payer Vpa,Payee Vpa,DR/CR,"
    yield b"Status,Date\r\n"
    for n in range(rows):
        # Days 1 to 12 only: no date proves the order, so the look-ahead window fills up.
        when = f"{1 + n % 12:02d}/08/2025 {n % 24:02d}:{n % 60:02d}:00"
        yield (
            f'AXI{n:032d},{524100000000 + n},"{n % 100000 + 1:,}.{n % 100:02d}",'
            f"payer{n % 977}@okaxis,shop@okhdfcbank,CR,{'SFPD'[n % 4]},{when}\r\n"
        ).encode()


def test_memory_stays_flat_on_a_large_file(upi):
    rows = 200_000
    stream = io.BufferedReader(GeneratedStream(upi_report(rows)))
    tracemalloc.start()
    try:
        items = upi.parse(stream, ParseContext())
        counted = sum(1 for item in items if isinstance(item, Transaction))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counted == rows
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
