"""Streaming a CSV file as records: find the header, map columns, skip what is not data.

Memory stays flat: the text is decoded and split as it is read, one row at a time;
only :func:`settle_day_first` holds rows back, and at most ``window`` of them.
"""
from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from .dates import day_first_evidence
from .errors import UnreadableFile
from .vocab import normalise_header

__all__ = ["Record", "read_table", "settle_day_first"]

#: How many rows from the top may hold the header (bank statements put it 2 to 20 rows down).
HEADER_SCAN = 30
#: How many data rows :func:`settle_day_first` may hold while it looks for evidence.
DAY_FIRST_WINDOW = 1000
#: Balance and summary labels at the start of any cell (cells joined with ``\x1f``): the row
#: is not a transaction.
_BALANCE_LABEL = re.compile(
    r"(?:^|\x1f)[^\w\x1f]*"
    r"(?:(?:opening|closing)\s*bal|bal(?:ance)?\s*(?:b/?f|c/?f|brought|carried)"
    r"|(?:brought|carried)\s+forward|statement\s+summary|end\s+of\s+(?:the\s+)?statement)",
    re.IGNORECASE,
)
#: A word each balance or summary label holds.
_BALANCE_WORDS = ("bal", "forward", "summary", "statement")
#: Total labels, in the first filled cell only (a narration may start with "TOTAL ...").
_TOTAL_LABEL = re.compile(r"\W*(?:grand\s+|sub\s*-?\s*)?totals?\b", re.IGNORECASE)
#: Labels after which only a footer follows.
_END_LABEL = re.compile(
    r"(?:^|\x1f)[^\w\x1f]*"
    r"(?:closing\s*bal|statement\s+summary|end\s+of\s+(?:the\s+)?statement|grand\s+total)",
    re.IGNORECASE,
)
#: A row with letters or digits somewhere (others, like ``-----``, are rules).
_ALNUM = re.compile(r"[0-9A-Za-z]")
#: A byte that did not decode (kept as a lone surrogate by ``surrogateescape``).
_UNDECODED = re.compile("[\udc80-\udcff]")
#: A letter: a one-cell note has words, a lone id does not.
_LETTER = re.compile(r"[A-Za-z]")
#: What surrounds the only filled cell of a one-cell row, once its cells are joined.
_BLANK = "\x1f \t\r\n"


@dataclass(frozen=True, slots=True)
class Record:
    """One data row of a table.

    Parameters:
      line: the physical line (1-based) the row starts on, counting preamble and header.
      raw: the row's original text, its line breaks included, without the final one.
      values: field name to the stripped cell text, for every mapped column (``""`` if blank).
      raw_row: the whole row, header name to cell text as written.
      trailing: the row comes after a closing balance or statement summary: a footer.
    """

    line: int
    raw: str
    values: dict[str, str]
    raw_row: dict[str, str]
    trailing: bool = False


def _text(stream: BinaryIO | TextIO, encoding: str) -> TextIO:
    if isinstance(stream, io.TextIOBase):
        return stream  # type: ignore[return-value]
    # Bad bytes are kept as surrogates until their row is reached, to name its line.
    return io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")


def _physical_rows(text: TextIO) -> Iterator[tuple[int, str, list[str]]]:
    """``(first line, original text, cells)`` of each CSV row, quoted line breaks included."""
    taken: list[str] = []

    def lines() -> Iterator[str]:
        for line in text:
            taken.append(line)
            yield line

    reader = csv.reader(lines())
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UnreadableFile(f"line {start}: {exc} (an unclosed quote?)") from None
        raw = "".join(taken).rstrip("\r\n")
        if bad := _UNDECODED.search(raw):
            raise UnreadableFile(f"line {start}: {_not_utf8(raw, bad.group())}")
        yield start, raw, cells
        taken.clear()
        start = reader.line_num + 1


def _not_utf8(raw: str, bad: str) -> str:
    if raw[:2] in ("\udcff\udcfe", "\udcfe\udcff"):
        return "the file is UTF-16 text; save it as CSV UTF-8"
    return f"the file is not UTF-8 text (byte 0x{ord(bad) - 0xDC00:02X}); save it as CSV UTF-8"


def _aliases(columns: Mapping[str, Iterable[str]]) -> dict[str, str]:
    return {normalise_header(alias): name for name, aliases in columns.items() for alias in aliases}


def _match(cells: Sequence[str], aliases: Mapping[str, str]) -> dict[str, int]:
    """Field name to column index, for the cells that are known column names."""
    index: dict[str, int] = {}
    for position, cell in enumerate(cells):
        name = aliases.get(normalise_header(cell))
        if name is not None and name not in index:
            index[name] = position
    return index


def _missing(index: Mapping[str, int], required: Iterable[Sequence[str]]) -> list[Sequence[str]]:
    return [group for group in required if not any(name in index for name in group)]


def _keys(cells: Sequence[str]) -> list[str]:
    keys: list[str] = []
    for position, cell in enumerate(cells):
        key = cell.strip() or f"column {position + 1}"
        key = key if key not in keys else f"{key} ({position + 1})"
        keys.append(key)
    return keys


def _find_header(
    rows: Iterator[tuple[int, str, list[str]]],
    columns: Mapping[str, Sequence[str]],
    required: Sequence[Sequence[str]],
    min_matches: int,
    scan: int,
) -> tuple[list[str], dict[str, int]]:
    aliases = _aliases(columns)
    best: tuple[int, dict[str, int]] | None = None
    seen = 0
    for line, _raw, cells in itertools.islice(rows, scan):
        seen += 1
        index = _match(cells, aliases)
        if len(index) < min_matches:
            continue
        if not _missing(index, required):
            return cells, index
        if best is None or len(index) > len(best[1]):
            best = (line, index)
    if best is not None:
        line, index = best
        wanted = " and ".join(
            " or ".join(repr(columns[name][0]) for name in group)
            for group in _missing(index, required)
        )
        raise UnreadableFile(f"the header on line {line} has no column for {wanted}")
    if not seen:
        raise UnreadableFile("the file is empty")
    raise UnreadableFile(f"no recognisable header in the first {scan} rows")


def _skipped(cells: Sequence[str]) -> tuple[bool, bool]:
    """Whether to skip the row (blank, a rule like ``-----``, a one-cell note, a balance or
    total row), and whether it ends the data (closing balance, statement summary)."""
    joined = "\x1f".join(cells)
    if not _ALNUM.search(joined):
        return True, False
    lowered = joined.lower()  # the label patterns run only where one of their words is
    if any(word in lowered for word in _BALANCE_WORDS) and _BALANCE_LABEL.search(joined):
        return True, _END_LABEL.search(joined) is not None
    first = next(cell for cell in cells if cell.strip())
    if "total" in lowered and _TOTAL_LABEL.match(first):
        return True, _END_LABEL.search(joined) is not None
    note = first.strip() == joined.strip(_BLANK) and " " in first.strip() and _LETTER.search(first)
    return bool(note), False


def _repeats(cells: Sequence[str], header_names: Sequence[str]) -> bool:
    """Whether the row repeats the header (statements do at each page break)."""
    return (
        len(cells) == len(header_names)
        and normalise_header(cells[0]) == header_names[0]
        and [normalise_header(cell) for cell in cells] == header_names
    )


def read_table(
    stream: BinaryIO | TextIO,
    *,
    columns: Mapping[str, Sequence[str]],
    required: Sequence[Sequence[str]] = (),
    min_matches: int = 3,
    scan: int = HEADER_SCAN,
    encoding: str = "utf-8-sig",
) -> Iterator[Record]:
    """Read a CSV file row by row, below its header, as :class:`Record` objects.

    The header is the first of the top ``scan`` rows with at least ``min_matches`` known
    column names and every ``required`` column; rows above it are a preamble. Below it,
    blank rows, rules, one-cell notes, repeated headers, opening / closing balance and
    total rows are skipped; after a closing balance or a statement summary, rows are
    marked ``trailing`` (a footer: a parser reports nothing for those that are not
    transactions). The caller's stream is left open.

    Parameters:
      stream: the file, read incrementally (bytes; a text stream is used as is).
      columns: field name to its header aliases; the first alias names it in messages.
        Aliases compare case-, space- and punctuation-insensitively.
      required: groups of field names; each group needs one of its fields in the header.
      min_matches: known column names a header row needs.
      scan: how many rows from the top may hold the header.
      encoding: ``utf-8-sig`` reads UTF-8 with or without a byte order mark.

    Raises:
      UnreadableFile: empty, no header, a required column missing, not UTF-8, or broken
        CSV (raised when reached, so possibly after some records).
    """
    text = _text(stream, encoding)
    try:
        rows = _physical_rows(text)
        header, index = _find_header(rows, columns, required, min_matches, scan)
        keys, header_names = _keys(header), [normalise_header(cell) for cell in header]
        mapped = sorted(index.items(), key=lambda item: item[1])
        trailing = False
        for line, raw, cells in rows:
            if _repeats(cells, header_names):
                continue
            skip, ends = _skipped(cells)
            if skip:
                trailing = trailing or ends
                continue
            width = len(cells)
            values = {name: cells[at].strip() if at < width else "" for name, at in mapped}
            raw_row = dict(zip(keys, cells))
            if width > len(keys):
                raw_row |= {f"column {n + 1}": cells[n] for n in range(len(keys), width)}
            yield Record(line, raw, values, raw_row, trailing)
    finally:
        if text is not stream:
            text.detach()


def settle_day_first(
    records: Iterable[Record],
    *,
    fields: Sequence[str],
    window: int = DAY_FIRST_WINDOW,
    default: bool = True,
) -> tuple[bool, Iterator[Record]]:
    """Decide whether the file's numeric dates are day-first, from a bounded look-ahead.

    Rows are held back until one date in ``fields`` proves the order (``29/08`` is
    day-first, ``08/29`` month-first), or ``window`` rows have gone by, or the file ends;
    then the first evidence decides, or ``default`` (day-first, the Indian layout) if
    there was none. Later rows that contradict the decision become row errors (their
    date does not exist in that order). The whole file is never held.

    Returns:
      The decision, and every record (the held ones first), in file order.

    Raises:
      UnreadableFile: from ``records``, while looking ahead.
    """
    records = iter(records)
    held: list[Record] = []
    decision: bool | None = None
    for record in records:
        held.append(record)
        for name in fields:
            decision = day_first_evidence(record.values.get(name, ""))
            if decision is not None:
                break
        if decision is not None or len(held) >= window:
            break
    return (default if decision is None else decision), itertools.chain(held, records)
