"""The installed matching rules, found through the plugin hooks on every call (as sources are)."""
from __future__ import annotations

from app.errors import Invalid
from app.hooks import MatchRules, get_plugin_manager, match_rules
from app.ingest.sources import find_source
from app.settings import Settings

__all__ = ["find_rules", "grace_hours", "reconcilable_sources"]


def find_rules(name: str) -> tuple[str, MatchRules]:
    """The canonical source name and its matching rules, for a source name or alias in any case.

    Raises:
      Invalid: no installed source has that name (``unknown-source``, listing those that do),
        or it has no matching rules (``no-matching-rules``, listing the sources that have).
    """
    source = find_source(name)
    found = match_rules(get_plugin_manager())
    rules = found.get(source.name.upper())
    if rules is None:
        names = sorted(found)
        raise Invalid(
            f"source {source.name} has no matching rules; sources that can be reconciled: {', '.join(names) or 'none'}",
            slug="no-matching-rules",
            errors=[{"field": "source", "message": f"one of {', '.join(names) or 'none'}"}],
            sources=names,
        )
    if not rules.keys:
        raise Invalid(f"the matching rules of {source.name} declare no key", slug="no-matching-rules")
    return source.name.upper(), rules


def reconcilable_sources() -> list[str]:
    """The names (upper case) of the installed sources that have matching rules, sorted."""
    return sorted(match_rules(get_plugin_manager()))


def grace_hours(settings: Settings, source: str, rules: MatchRules) -> float:
    """Hours a pending payment of ``source`` is not yet a break: the setting, else the plugin's."""
    return settings.reconcile_grace_hours.get(source.upper(), rules.pending_grace_hours)
