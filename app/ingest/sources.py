"""The installed transaction sources, found through the plugin hooks on every call.

A plugin pip-installs while fairq runs: a fresh plugin manager per lookup (about
2 ms) sees it without a restart.
"""
from __future__ import annotations

import importlib

from app.errors import Invalid
from app.hooks import Source, get_plugin_manager, sources

__all__ = ["find_source", "installed_sources"]


def installed_sources() -> dict[str, Source]:
    """Every installed source by each of its names, upper case."""
    return sources(get_plugin_manager())


def find_source(name: str) -> Source:
    """The source called ``name`` (any case, or one of its aliases).

    Raises:
      Invalid: no installed source has that name; the message lists those that are.
    """
    wanted = (name or "").strip().upper()
    found = installed_sources()
    if wanted not in found:
        importlib.invalidate_caches()  # a distribution installed a moment ago
        found = installed_sources()
    source = found.get(wanted)
    if source is None or source.parse is None:
        names = ", ".join(sorted(n for n, s in found.items() if s.parse is not None)) or "none"
        raise Invalid(
            f"unknown source {name!r}; installed sources: {names}",
            slug="unknown-source",
            errors=[{"field": "source", "message": f"one of {names}"}],
            sources=sorted(n for n, s in found.items() if s.parse is not None),
        )
    return source
