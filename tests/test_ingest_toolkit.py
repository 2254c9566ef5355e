"""The ingest toolkit: amounts, dates, statuses, identifiers and the streaming table reader.

Property-based where a rule is general (any amount written any Indian way reads back
equal; any date in any layout reads back equal), examples where a case matters.
"""
from __future__ import annotations

import ast
import io
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app import hooks
from app.ingest import toolkit
from app.ingest.toolkit.vocab import DIRECTIONS, STATUSES

TOOLKIT = Path(__file__).resolve().parent.parent / "app" / "ingest" / "toolkit"


# -- the module's place -------------------------------------------------------------------------


def test_plugins_reach_the_toolkit_through_hooks():
    assert hooks.toolkit is toolkit and "toolkit" in hooks.__all__
    assert set(toolkit.__all__) <= set(dir(toolkit))


def test_the_toolkit_imports_nothing_from_app():
    for path in TOOLKIT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[0] == "app" for alias in node.names), path
            elif isinstance(node, ast.ImportFrom):
                # Only its own modules (relative imports), the standard library and zoneinfo.
                assert node.level == 1 or not (node.module or "").startswith("app"), path


# -- amounts ------------------------------------------------------------------------------------

amounts = st.decimals(min_value=Decimal("0.01"), max_value=toolkit.MAX_AMOUNT, places=2)


def indian(value: Decimal) -> str:
    """``1,23,45,678.90``: the last three digits, then groups of two."""
    whole, _, fraction = f"{value:.2f}".partition(".")
    head, groups = whole[:-3], [whole[-3:]]
    while head:
        head, groups = head[:-2], [head[-2:], *groups]
    return ",".join(groups) + "." + fraction


#: How a number may be grouped.
GROUPINGS = [indian, lambda v: f"{v:,.2f}", lambda v: f"{v:.2f}", lambda v: f"{v:.2f}0000"]
#: Currency marks, before or after.
CURRENCIES = ["{}", "₹{}", "₹ {}", "INR {}", "Rs.{}", "Rs. {}", "{} INR", "rs {}"]
#: Sign styles and the direction each means.
SIGNS = [
    ("{}", None), ("+{}", None), ("-{}", "DR"), ("({})", "DR"), ("{}-", "DR"),
    ("{} Dr", "DR"), ("{}DR.", "DR"), ("{} Cr", "CR"), ("{} CR.", "CR"), ("-{} Dr", "DR"),
]


@given(
    value=amounts,
    grouping=st.sampled_from(GROUPINGS),
    currency=st.sampled_from(CURRENCIES),
    sign=st.sampled_from(SIGNS),
    padding=st.sampled_from(["", " ", "\t", "\u00a0"]),
)
def test_any_amount_written_any_way_reads_back_equal(value, grouping, currency, sign, padding):
    style, direction = sign
    text = padding + style.format(currency.format(grouping(value))) + padding
    assert toolkit.parse_amount(text) == (value, direction)


@given(value=amounts)
def test_amounts_are_exact_decimals_with_two_places(value):
    parsed = toolkit.parse_amount(indian(value)).value
    assert type(parsed) is Decimal and parsed.as_tuple().exponent == -2


@given(value=amounts, extra=st.integers(min_value=1, max_value=9))
def test_more_than_two_non_zero_decimals_are_refused(value, extra):
    with pytest.raises(toolkit.BadValue, match="more than 2 decimal places"):
        toolkit.parse_amount(f"{value:.2f}{extra}")


def test_exact_arithmetic():
    tenth = toolkit.parse_amount("0.10").value
    assert tenth + toolkit.parse_amount("0.20").value == Decimal("0.30")
    assert toolkit.parse_amount("9999999999999999.99").value == toolkit.MAX_AMOUNT
    assert toolkit.parse_amount("1,00,000").value == Decimal("100000.00")
    assert toolkit.parse_amount(".5").value == Decimal("0.50")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "amount is empty"),
        ("  ₹ ", "amount is empty"),
        ("abc", "is not a number"),
        ("1,2,3", "is not a number"),
        ("12,34", "is not a number"),
        ("1,00,00", "is not a number"),
        ("1.2.3", "is not a number"),
        ("1e5", "is not a number"),
        ("--5", "is not a number"),
        ("(5) Cr", "contradictory signs"),
        ("-5 Cr", "contradictory signs"),
        ("(-5)", "contradictory signs"),
        ("10000000000000000.00", "larger than NUMERIC"),
        ("1.001", "more than 2 decimal places"),
    ],
)
def test_bad_amounts(text, reason):
    with pytest.raises(toolkit.BadValue, match=reason.replace("(", r"\(")):
        toolkit.parse_amount(text)


# -- dates --------------------------------------------------------------------------------------

#: Date layouts that need no day/month decision, or that are read day-first.
DAY_FIRST_LAYOUTS = [
    "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d/%m/%y", "%d-%m-%y", "%d-%b-%Y", "%d %b %Y",
    "%d-%b-%y", "%d %B %Y", "%d/%b/%Y", "%Y-%m-%d", "%Y/%m/%d", "%b %d, %Y", "%B %d %Y",
]
#: Layouts read month-first.
MONTH_FIRST_LAYOUTS = ["%m/%d/%Y", "%m-%d-%Y", "%m/%d/%y"]
#: Times after the date, and what each keeps of the time of day.
TIMES = [
    ("", lambda t: time()),
    (" %H:%M:%S", lambda t: t),
    (" %H:%M", lambda t: t.replace(second=0)),
    (" %I:%M:%S %p", lambda t: t),
    (" %I:%M %p", lambda t: t.replace(second=0)),
    (", %H:%M:%S", lambda t: t),
    ("T%H:%M:%S", lambda t: t),
]
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59))
zones = st.sampled_from(["Asia/Kolkata", "UTC", "Asia/Dubai"]).map(ZoneInfo)


@given(
    moment=moments,
    layout=st.sampled_from(
        [(f, True) for f in DAY_FIRST_LAYOUTS] + [(f, False) for f in MONTH_FIRST_LAYOUTS]
    ),
    clock=st.sampled_from(TIMES),
    where=zones,
    lower=st.booleans(),
)
def test_any_date_in_any_layout_reads_back_equal(moment, layout, clock, where, lower):
    date_format, day_first = layout
    time_format, kept = clock
    text = moment.strftime(date_format + time_format)
    text = text.lower() if lower else text
    local = datetime.combine(moment.date(), kept(moment.time().replace(microsecond=0)))
    assert toolkit.parse_date(text, day_first=day_first) == moment.date()
    assert toolkit.parse_datetime(text, day_first=day_first, where=where) == (
        local.replace(tzinfo=where).astimezone(UTC)
    )


@given(moment=moments)
def test_a_day_past_twelve_is_evidence_of_the_order(moment):
    day_first = moment.strftime("%d/%m/%Y")
    month_first = moment.strftime("%m/%d/%Y %H:%M")
    if moment.day > 12:
        assert toolkit.day_first_evidence(day_first) is True
        assert toolkit.day_first_evidence(month_first) is False
    else:
        assert toolkit.day_first_evidence(day_first) is None
    assert toolkit.day_first_evidence(moment.strftime("%Y-%m-%d")) is None
    assert toolkit.day_first_evidence(moment.strftime("%d-%b-%Y")) is None


def test_dates_with_offsets_and_fractions():
    moment = datetime(2025, 8, 29, 8, 33, 11, tzinfo=UTC)
    assert toolkit.parse_datetime("2025-08-29T14:03:11+05:30") == moment
    assert toolkit.parse_datetime("2025-08-29 08:33:11Z") == moment
    assert toolkit.parse_datetime("2025-08-29 14:03:11.250", where=ZoneInfo("UTC")) == datetime(
        2025, 8, 29, 14, 3, 11, 250000, tzinfo=UTC
    )
    assert toolkit.parse_datetime("29/08/2025 12:00 AM", where=ZoneInfo("UTC")).hour == 0
    assert toolkit.parse_datetime("29/08/2025 12:30 pm", where=ZoneInfo("UTC")).hour == 12


def test_times_of_day():
    assert toolkit.parse_time("14:03") == time(14, 3)
    assert toolkit.parse_time(" 2:03:11 PM ") == time(14, 3, 11)
    assert toolkit.parse_time("1899-12-30 14:03:11") == time(14, 3, 11)  # a spreadsheet's time
    with pytest.raises(toolkit.BadValue, match="not a time of day"):
        toolkit.parse_time("29/08/2025")
    with pytest.raises(toolkit.BadValue, match="not a valid time of day"):
        toolkit.parse_time("25:00")
    with pytest.raises(toolkit.BadValue, match="hour 13 with AM/PM"):
        toolkit.parse_time("13:00 PM")


def test_a_naive_local_time_becomes_utc():
    local = datetime(2025, 8, 29, 10, 0)
    kolkata = toolkit.zone("Asia/Kolkata")
    assert toolkit.to_utc(local, kolkata) == datetime(2025, 8, 29, 4, 30, tzinfo=UTC)
    with pytest.raises(toolkit.UnreadableFile, match="unknown time zone"):
        toolkit.zone("Nowhere/Special")


@pytest.mark.parametrize(
    ("text", "day_first", "reason"),
    [
        ("31/02/2025", True, "not a valid date \\(read day-first\\)"),
        ("02/31/2025", True, "not a valid date \\(read day-first\\)"),
        ("29/08/2025", False, "not a valid date \\(read month-first\\)"),
        ("2025-13-01", True, "not a valid date$"),
        ("29-Foo-2025", True, "unknown month 'Foo'"),
        ("yesterday", True, "not in a known layout"),
        ("", True, "not in a known layout"),
        ("29082025", True, "not in a known layout"),
    ],
)
def test_bad_dates(text, day_first, reason):
    with pytest.raises(toolkit.BadValue, match=reason):
        toolkit.parse_date(text, day_first=day_first)


# -- statuses and directions --------------------------------------------------------------------

casings = st.sampled_from([str.upper, str.lower, str.title, str.capitalize])


@given(
    entry=st.sampled_from(sorted(STATUSES.items())),
    casing=casings,
    pad=st.sampled_from(["", " ", "\t"]),
)
def test_every_status_word_in_any_case(entry, casing, pad):
    word, status = entry
    assert toolkit.parse_status(pad + casing(word) + pad) == status


@given(code=st.from_regex(r"[A-Z][0-9]{2}|[A-Z0-9]{2}", fullmatch=True))
def test_unknown_response_codes_are_failures(code):
    assume(code != "NA")  # "not available": an empty status
    assert toolkit.parse_status(code) == STATUSES.get(code, "FAILED")


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("S", "SUCCESS"), ("f", "FAILED"), ("p", "PENDING"), ("D", "PENDING"),
        ("Deemed", "PENDING"), ("DEEMED SUCCESS", "PENDING"), ("00", "SUCCESS"), ("01", "PENDING"),
        ("RB", "PENDING"), ("U69", "FAILED"), ("u30", "FAILED"), ("ZM", "FAILED"), ("96", "FAILED"),
        ("SUCCESS (00)", "SUCCESS"), ("Failed - U30", "FAILED"), ("In Progress", "PENDING"),
    ],
)
def test_status_vocabulary(text, status):
    assert toolkit.parse_status(text) == status


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "status is empty"), ("N/A", "status is empty"), ("MAYBE", "not a known status"),
     ("X", "not a known status")],
)
def test_bad_statuses(text, reason):
    with pytest.raises(toolkit.BadValue, match=reason):
        toolkit.parse_status(text)


@given(entry=st.sampled_from(sorted(DIRECTIONS.items())), casing=casings)
def test_every_direction_word_in_any_case(entry, casing):
    word, direction = entry
    assert toolkit.parse_direction(casing(word) + ".") == direction


def test_bad_directions():
    with pytest.raises(toolkit.BadValue, match="'X' is neither DR nor CR"):
        toolkit.parse_direction("X")
    with pytest.raises(toolkit.BadValue, match="flag is empty"):
        toolkit.parse_direction(" ")


def test_header_names_compare_loosely():
    names = ["Chq./Ref.No.", "CHQ REF NO", "chq_ref_no", " Chq-Ref-No "]
    assert {toolkit.normalise_header(name) for name in names} == {"chqrefno"}


# -- identifiers --------------------------------------------------------------------------------


def test_rrns():
    assert toolkit.normalise_rrn(" 5241 1234 5601 ") == "524112345601"
    assert toolkit.normalise_rrn("'524112345601") == "524112345601"
    assert toolkit.normalise_rrn('="524112345601"') == "524112345601"
    with pytest.raises(toolkit.BadValue, match="is not 12 digits"):
        toolkit.normalise_rrn("52411234560")
    with pytest.raises(toolkit.BadValue, match="scientific notation"):
        toolkit.normalise_rrn("5.24112E+11")


def test_vpas():
    assert toolkit.normalise_vpa(" Ravi.Kumar@OKHDFCBANK ") == "ravi.kumar@okhdfcbank"
    assert toolkit.normalise_vpa("9876543210@ybl") == "9876543210@ybl"
    for bad in ("ravi.okaxis", "@ybl", "ravi@", "ravi kumar@ybl", "ravi@1bank"):
        with pytest.raises(toolkit.BadValue, match="name@handle"):
            toolkit.normalise_vpa(bad)


def test_ifscs():
    assert toolkit.normalise_ifsc(" citi0000002 ") == "CITI0000002"
    for bad in ("CITI000002", "CITI1000002", "C1TI0000002", "CITI00000022"):
        with pytest.raises(toolkit.BadValue, match="4 letters, a 0"):
            toolkit.normalise_ifsc(bad)


def test_utrs():
    assert toolkit.normalise_utr("citin 5202508 2917") == "CITIN52025082917"
    assert toolkit.normalise_utr("CITIN52025082917691328") == "CITIN52025082917691328"
    with pytest.raises(toolkit.BadValue, match="is 15 characters, not 16 or 22"):
        toolkit.normalise_utr("CITIN5202508291")
    with pytest.raises(toolkit.BadValue, match="is not a bank code"):
        toolkit.normalise_utr("1234N52025082917")
    assert toolkit.looks_like_utr("CITIN5202508291")
    assert not toolkit.looks_like_utr("000145")
    assert not toolkit.looks_like_utr("0000522112345678")


def test_transaction_ids():
    assert toolkit.normalise_txn_id(" AXI8f2c01d5e6a9 ") == "AXI8f2c01d5e6a9"
    for bad in ("has space", "x" * 65, "-leading"):
        with pytest.raises(toolkit.BadValue, match="transaction id"):
            toolkit.normalise_txn_id(bad)


@pytest.mark.parametrize(
    ("narration", "found"),
    [
        (
            "NEFT Cr-CITI0000002-REMITTER-BENEFICIARY-CITIN52025082917691328",
            ("CITIN52025082917691328", "CITI0000002", "REMITTER"),
        ),
        (
            "NEFT DR-SBIN0001234-SHARMA SUPPLIERS-NETBANK, MUM-HDFCN52025080498765432-INV 1123",
            ("HDFCN52025080498765432", "SBIN0001234", "SHARMA SUPPLIERS"),
        ),
        (
            "BY TRANSFER-NEFT*HDFC0000123*N123456789012*RAVI KUMAR--",
            (None, "HDFC0000123", "RAVI KUMAR"),
        ),
        ("NEFT/UTR:AXISCN0214587963/SUNRISE FOODS", ("AXISCN0214587963", None, None)),
        ("IMPS-522112345678-RAVI KUMAR-SBIN-XXXXXXX4521", (None, None, None)),
        # A long name is not a UTR: a UTR holds digits.
        ("NEFT CR-RAMAKRISHNANSONS-PAYMENT", (None, None, None)),
    ],
)
def test_narrations(narration, found):
    assert toolkit.scan_narration(narration) == found


def test_content_ids_are_deterministic():
    one = toolkit.content_id("2025-08-29", Decimal("10.00"), "DR", "ATM", None)
    assert one == toolkit.content_id("2025-08-29", Decimal("10.00"), "DR", "ATM", "")
    assert one.startswith("h:") and len(one) == 42
    assert one != toolkit.content_id("2025-08-29", Decimal("10.00"), "CR", "ATM", None)


# -- the table reader ---------------------------------------------------------------------------

COLUMNS = {
    "id": ("Txn Id", "ID"),
    "date": ("Date", "Txn Date"),
    "amount": ("Amount", "Amt"),
    "narration": ("Narration",),
}


def read(data: bytes | str, **options) -> list[toolkit.Record]:
    stream = io.BytesIO(data.encode() if isinstance(data, str) else data)
    return list(toolkit.read_table(stream, columns=COLUMNS, **options))


def test_records_carry_physical_lines_and_original_text():
    data = (
        "\ufeffTxn Id,Date,Amount,Narration\r\n"
        'A1,29/08/2025,10.00,"two\r\nlines, and a comma"\r\n'
        "A2,29/08/2025,20.00,plain\r\n"
        "\r\n\r\n"
    )
    first, second = read(data)
    assert (first.line, second.line) == (2, 4)
    assert first.raw == 'A1,29/08/2025,10.00,"two\r\nlines, and a comma"'
    assert first.values == {
        "id": "A1",
        "date": "29/08/2025",
        "amount": "10.00",
        "narration": "two\r\nlines, and a comma",
    }
    assert list(first.raw_row) == ["Txn Id", "Date", "Amount", "Narration"]


def test_the_header_may_sit_below_a_preamble_within_the_scan():
    preamble = "".join(f"Bank statement line {n}\n" for n in range(29))
    [record] = read(preamble + "ID,Date,Amt\nA1,29/08/2025,5\n")
    assert record.line == 31 and record.values["amount"] == "5"
    with pytest.raises(toolkit.UnreadableFile, match="no recognisable header in the first 30 rows"):
        read("x\n" + preamble + "ID,Date,Amt\nA1,29/08/2025,5\n")


def test_what_is_skipped():
    data = (
        "ID,Date,Amount,Narration\n"
        ",,,Opening Balance\n"  # a balance label in any cell
        "A1,01/08/2025,10,TOTAL ENERGIES FUEL\n"  # "TOTAL" in a narration is data
        "-----,-----,-----,-----\n"  # a rule
        "Page 2 of 3,,,\n"  # a note
        "ID,Date,Amount,Narration\n"  # the header again at a page break
        "A2,02/08/2025,20,x\n"
        "Total,,30,\n"  # a total
        "Balance C/F,,,\n"
    )
    assert [r.values["id"] for r in read(data)] == ["A1", "A2"]


def test_rows_after_a_closing_balance_are_trailing():
    data = "ID,Date,Amount\nA1,01/08/2025,10\n,Closing Balance,10\nA9,x,y\n"
    first, footer = read(data)
    assert not first.trailing and footer.trailing and footer.line == 4


def test_short_long_and_odd_rows():
    # A blank header name and a repeated one get names of their own; cells past the header too.
    short, long = read("ID,Date,Amount,,Amount\nA1,01/08/2025\nA2,02/08/2025,1,2,3,4\n")
    assert short.values == {"id": "A1", "date": "01/08/2025", "amount": ""}
    assert long.raw_row == {
        "ID": "A2", "Date": "02/08/2025", "Amount": "1", "column 4": "2", "Amount (5)": "3",
        "column 6": "4",
    }


def test_a_required_column_missing_is_named():
    with pytest.raises(toolkit.UnreadableFile, match="header on line 2 has no column for 'Amount'"):
        read("Report\nID,Date,Narration\nA1,01/08/2025,x\n", required=[("amount",)])
    with pytest.raises(toolkit.UnreadableFile, match="no column for 'Txn Id' or 'Narration'"):
        read("Date,Amount,Other\n01/08/2025,1,x\n", required=[("id", "narration")], min_matches=2)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "no recognisable header"),
        ("ID,Date,Amount\n".encode("utf-16"), "line 1: the file is UTF-16 text"),
        (b"ID,Date,Amount\nA1,1/8/2025,\xe9\n", r"line 2: the file is not UTF-8 \w+ \(byte 0xE9\)"),
        # An unclosed quote swallows the rest of the file, up to the csv module's field limit.
        (b'ID,Date,Amount\nA1,01/08/2025,"' + b"x" * 200_000, "line 2: field larger than field"),
    ],
)
def test_unreadable_files(data, reason):
    with pytest.raises(toolkit.UnreadableFile, match=reason):
        read(data)


def test_the_callers_stream_stays_open_and_text_streams_work():
    stream = io.BytesIO(b"ID,Date,Amount\nA1,01/08/2025,1\n")
    assert len(list(toolkit.read_table(stream, columns=COLUMNS))) == 1
    assert not stream.closed
    text = io.StringIO("ID,Date,Amount\nA1,01/08/2025,1\n")
    assert len(list(toolkit.read_table(text, columns=COLUMNS))) == 1


def records(dates: Iterable[str]) -> Iterator[toolkit.Record]:
    for line, text in enumerate(dates, start=2):
        yield toolkit.Record(line, text, {"date": text}, {"Date": text})


class Counted:
    """An iterator that counts how many items were taken from it."""

    def __init__(self, items: Iterator[toolkit.Record]):
        self.items, self.taken = items, 0

    def __iter__(self):
        return self

    def __next__(self) -> toolkit.Record:
        item = next(self.items)
        self.taken += 1
        return item


def test_the_first_evidence_settles_the_order():
    source = Counted(records(["05/08/2025", "08/13/2025", "01/02/2025", "28/09/2025"]))
    day_first, rows = toolkit.settle_day_first(source, fields=["date"])
    assert day_first is False and source.taken == 2  # held only until the evidence
    assert [r.line for r in rows] == [2, 3, 4, 5]


def test_without_evidence_the_window_bounds_the_look_ahead():
    source = Counted(records(["05/08/2025"] * 50 + ["29/08/2025"]))
    day_first, rows = toolkit.settle_day_first(source, fields=["date"], window=10, default=True)
    assert day_first is True and source.taken == 10
    assert len(list(rows)) == 51
    day_first, _ = toolkit.settle_day_first(records(["05/08/2025"]), fields=["date"], default=False)
    assert day_first is False


# -- memory -------------------------------------------------------------------------------------


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


def generated(rows: int) -> Iterator[bytes]:
    yield b"Statement\r\n\r\nTxn Id,Date,Amount,Narration\r\n"
    for n in range(rows):
        day = f"{1 + n % 12:02d}/08/2025"  # never proves the order: the look-ahead window fills up
        yield f'T{n},{day} 10:{n % 60:02d},"{n:,}.50 Cr","a, quoted\r\nnarration {n}"\r\n'.encode()


def test_memory_stays_flat_while_reading_a_large_file():
    rows = 200_000
    stream = io.BufferedReader(GeneratedStream(generated(rows)))
    tracemalloc.start()
    try:
        day_first, records = toolkit.settle_day_first(
            toolkit.read_table(stream, columns=COLUMNS), fields=["date"]
        )
        total = Decimal(0)
        latest = datetime(2000, 1, 1, tzinfo=UTC)
        for record in records:
            total += toolkit.parse_amount(record.values["amount"]).value
            latest = max(latest, toolkit.parse_datetime(record.values["date"], day_first=day_first))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == sum(Decimal(n) + Decimal("0.50") for n in range(rows))
    assert latest == datetime(2025, 8, 12, 10, 59, tzinfo=UTC) - timedelta(hours=5, minutes=30)
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
