"""The loader's fast way through a CSV file: clean rows rendered straight to ``COPY`` text.

:func:`app.hooks.parse_table` builds a :class:`~app.hooks.Transaction` for every row, which
costs most of an ingest's Python time. :func:`stage_table` reads the same file the same way
(header, preamble, day-first look-ahead, skipped rows, line numbers) but gives each plain row
(unquoted, printable, no backslash, no balance / total word, as many cells as the header) to
the plugin's *fast row* function first: that returns the row's canonical values as text, and
the row becomes one line of ``COPY`` text here, without a Transaction, a ``Decimal``, a
``datetime`` or a dict. Every other row, and every row the fast function declines (returns
``None``), goes the full way: a :class:`~app.ingest.toolkit.Record`, the plugin's ``build``, and
:func:`app.ingest.rows.problem` in the loader. So rejected rows, their reasons and raw text
are the full way's, whatever the path.
"""
from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO, TextIO

import orjson

from app.hooks import ParseContext, RowError, SourceFileError, Transaction
from app.ingest import rows as render
from app.ingest.toolkit import BadValue, Record, UnreadableFile, normalise_header, settle_day_first, zone
from app.ingest.toolkit.table import HEADER_SCAN, _find_header, _keys, _not_utf8, _repeats, _skipped, _text
from app.ingest.toolkit.table import _UNDECODED

__all__ = ["FastRow", "FastRows", "stage_table"]

#: A fast row function: a plain row's cells to its canonical values as text, or ``None``.
FastRow = Callable[[list[str]], "tuple | None"]
#: Makes the fast row function of a file, once its header and day order are known.
FastRows = Callable[..., "FastRow | None"]
#: Words of the rows ``read_table`` may skip (balance, total, summary labels): a plain row holding
#: one (in any case) goes the full way, which decides. (Tested inline with ``in`` on the lowered
#: text: a tenth of the time of a case-insensitive regex search.)
_SKIP_WORDS = ("bal", "total", "forward", "summary", "statement")


def _rows(text: TextIO) -> Iterator[tuple[int, str, list[str]]]:
    """``(first line, original text, cells)`` of each CSV row, as ``csv.reader`` reads them.

    A line without a quote or NUL is split on commas (what the reader makes of it); any
    other row is read by ``csv.reader`` from its first line on, quoted line breaks included.
    """
    number = 0
    for line in text:
        number += 1
        if '"' not in line and "\x00" not in line:
            raw = line.rstrip("\r\n")
            if not raw.isascii() and (bad := _UNDECODED.search(raw)):
                raise UnreadableFile(f"line {number}: {_not_utf8(raw, bad.group())}")
            yield number, raw, raw.split(",") if raw else []
            continue
        taken = [line]

        def lines(first: str = line) -> Iterator[str]:
            yield first
            for more in text:
                taken.append(more)
                yield more

        try:
            cells = next(csv.reader(lines()))
        except csv.Error as exc:
            raise UnreadableFile(f"line {number}: {exc} (an unclosed quote?)") from None
        raw = "".join(taken).rstrip("\r\n")
        if bad := _UNDECODED.search(raw):
            raise UnreadableFile(f"line {number}: {_not_utf8(raw, bad.group())}")
        yield number, raw, cells
        number += len(taken) - 1


class _Records:
    """The full way's records, as ``toolkit.read_table`` makes them (skips, footer state)."""

    def __init__(self, header: list[str], index: Mapping[str, int]) -> None:
        self.keys = _keys(header)
        self.header_names = [normalise_header(cell) for cell in header]
        self.mapped = sorted(index.items(), key=lambda item: item[1])
        self.trailing = False

    def record(self, line: int, raw: str, cells: list[str]) -> Record | None:
        if _repeats(cells, self.header_names):
            return None
        skip, ends = _skipped(cells)
        if skip:
            self.trailing = self.trailing or ends
            return None
        width, keys = len(cells), self.keys
        values = {name: cells[at].strip() if at < width else "" for name, at in self.mapped}
        raw_row = dict(zip(keys, cells))
        if width > len(keys):
            raw_row |= {f"column {n + 1}": cells[n] for n in range(len(keys), width)}
        return Record(line, raw, values, raw_row, self.trailing)

    def all(self, rows: Iterator[tuple[int, str, list[str]]]) -> Iterator[Record]:
        for line, raw, cells in rows:
            record = self.record(line, raw, cells)
            if record is not None:
                yield record


def _json_template(keys: list[str]) -> str:
    """``raw_row`` as JSON text with a ``%s`` per cell (for cells JSON and COPY need not escape)."""
    pairs = (orjson.dumps(key).decode().replace("\\", "\\\\").replace("%", "%%") + ':"%s"' for key in keys)
    return "{" + ",".join(pairs) + "}"


def stage_table(
    stream: BinaryIO,
    context: ParseContext,
    *,
    columns: Mapping[str, tuple[str, ...]],
    required: tuple[tuple[str, ...], ...],
    date_fields: tuple[str, ...],
    build: Callable[..., Transaction],
    fast: FastRows,
) -> Iterator[Transaction | RowError | str]:
    """:func:`app.hooks.parse_table` for the bulk loader: plain rows come as ``COPY`` text.

    Parameters:
      columns, required, date_fields, build: as ``parse_table``.
      fast: ``fast(index, day_first=..., where=...)``, called once the header (``index``:
        field name to column position) and the day order are known, returns the file's fast
        row function or ``None`` (no fast path for this layout). The row function gets a plain
        row's cells (not stripped) and returns ``(txn_id, amount, status, txn_time, direction,
        currency, reference, counterparty, ifsc, settlement_date)`` as text (``None``: no value;
        times as ISO 8601 with an offset), exactly what ``build`` would give, or ``None``
        whenever it is not sure: the row then goes the full way. It must return ``None`` for
        a row ``toolkit.read_table`` would skip other than by a balance or total word: one
        without a letter or digit, with fewer than two filled cells, or repeating the header
        (a row without a valid amount and id does none of these).

    Yields:
      In file order: a ``str`` (a plain row, one line of ``COPY`` text in
      :data:`app.ingest.rows.STAGING_COLUMNS` order), or what ``parse_table`` yields.

    Raises:
      SourceFileError: as ``parse_table``.
    """
    valid = errors = 0
    text = _text(stream, "utf-8-sig")
    try:
        where = zone(context.timezone)
        rows = _rows(text)
        header, index = _find_header(rows, columns, required, 3, HEADER_SCAN)
        table = _Records(header, index)
        pulled = itertools.count()
        looked = (record for record in table.all(rows) if next(pulled) >= 0)
        day_first, records = settle_day_first(looked, fields=date_fields)
        held = next(pulled)

        def full(record: Record) -> Transaction | RowError | None:
            nonlocal valid, errors
            try:
                transaction = build(record, day_first=day_first, where=where)
            except BadValue as problem:
                if record.trailing:
                    return None
                errors += 1
                return RowError(record.line, str(problem), record.raw)
            valid += 1
            return transaction

        for record in itertools.islice(records, held):
            if (item := full(record)) is not None:
                yield item
        row_values = fast(index, day_first=day_first, where=where)
        keys = table.keys
        width = len(keys)
        template = _json_template(keys)
        staged_line = render.staged_line
        for line, raw, cells in rows:
            if (
                row_values is not None and not table.trailing and len(cells) == width
                and '"' not in raw and "\\" not in raw and raw.isprintable()
            ):
                lowered = raw.lower()
                if not ("bal" in lowered or "total" in lowered or "forward" in lowered
                        or "summary" in lowered or "statement" in lowered):
                    values = row_values(cells)
                    if values is not None:
                        staged = staged_line(values, line, template % tuple(cells))
                        if staged is not None:
                            valid += 1
                            yield staged
                            continue
            record = table.record(line, raw, cells)
            if record is not None and (item := full(record)) is not None:
                yield item
    except UnreadableFile as exc:
        raise SourceFileError(str(exc)) from None
    finally:
        if text is not stream:
            text.detach()
    if not valid:
        reason = f"all {errors} rows have errors" if errors else "a header but no data"
        raise SourceFileError(f"no valid rows: {reason}")
