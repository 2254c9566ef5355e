"""CSV downloads of table rows: streamed page by page, every cell escaped against formula injection."""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from app.ingest.rejects import escape_cell

__all__ = ["stream_csv", "PAGE_ROWS"]

#: Rows read per page of an export.
PAGE_ROWS = 5000


def stream_csv(
    columns: Sequence[str],
    fetch: Callable[[Any, int], Sequence[Any]],
    *,
    key: str = "id",
    page: int = PAGE_ROWS,
) -> Iterator[str]:
    """CSV text of every row ``fetch`` gives, a page at a time.

    Parameters:
      columns: the attributes written, in order (the header row).
      fetch: ``fetch(after, limit)`` returns the next page: rows after the key ``after``
        (``None`` for the first page), at most ``limit`` of them.
      key: the attribute that continues a page.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    after = None
    while True:
        rows = fetch(after, page)
        for row in rows:
            writer.writerow([escape_cell(getattr(row, column)) for column in columns])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < page:
            return
        after = getattr(rows[-1], key)
