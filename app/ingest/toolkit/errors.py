"""The two ways reading a file can fail: one bad value, or the whole file."""
from __future__ import annotations

__all__ = ["BadValue", "UnreadableFile"]


class BadValue(ValueError):
    """A cell's text is not a valid value; the message is the row error's reason."""


class UnreadableFile(ValueError):
    """The file as a whole cannot be read as a table; the message is the one clear reason."""
