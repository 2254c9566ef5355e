"""Plugin hooks: every hook specification fairq calls, and the plugin manager.

A plugin is a pip-installable distribution with an entry point in the group
``fairq.plugins``; the object the entry point names (usually a module) holds
functions decorated with :data:`hookimpl`. The core never imports a plugin: it
only calls these hooks. Plugins import this module and nothing else of
``app`` beyond its public API.

Each hook is documented in ``docs/plugins.md`` (a test keeps the two in step).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import pluggy

__all__ = [
    "PROJECT",
    "ENTRY_POINT_GROUP",
    "hookimpl",
    "hookspec",
    "Source",
    "Channel",
    "get_plugin_manager",
    "sources",
    "channels",
]

logger = logging.getLogger(__name__)

#: The pluggy project name (markers are ``fairq``).
PROJECT = "fairq"
#: The entry point group plugins declare in their setup.cfg.
ENTRY_POINT_GROUP = "fairq.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class Source:
    """A kind of transaction file a plugin can read.

    Parameters:
      name: the name users pass as ``"source"`` (case-insensitive), e.g. ``UPI``.
      aliases: other names for the same layout, e.g. ``IMPS``, ``RTGS``.
      description: one line for ``fairq plugins`` and error messages.
    """

    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    plugin: str = field(default="", compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name.upper(), *(alias.upper() for alias in self.aliases))


@dataclass(frozen=True)
class Channel:
    """A way to deliver a campaign message.

    Parameters:
      name: the name campaigns give as ``"channel"``, e.g. ``log``.
      description: one line for ``fairq plugins``.
    """

    name: str
    description: str = ""
    plugin: str = field(default="", compare=False)


class FairqSpecs:
    """The hook specifications."""

    @hookspec
    def fairq_register_sources(self) -> list[Source]:
        """Called once when the plugin manager is built, to learn the transaction sources.

        Returns:
          A list of :class:`Source` this plugin reads. Names must be unique
          across plugins.
        """

    @hookspec
    def fairq_register_channels(self) -> list[Channel]:
        """Called once when the plugin manager is built, to learn the campaign channels.

        Returns:
          A list of :class:`Channel` this plugin delivers through.
        """


def get_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager: the specifications, then every installed plugin.

    Parameters:
      load_entry_points: load the ``fairq.plugins`` entry points (tests turn it
        off to register plugins by hand).

    Raises:
      pluggy.PluginValidationError: a plugin implements a hook that does not exist.
    """
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(FairqSpecs)
    if load_entry_points:
        count = manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        logger.debug("loaded %d fairq plugins", count)
    manager.check_pending()
    return manager


def _collect(manager: pluggy.PluginManager, hook_name: str) -> list:
    """Call a registration hook plugin by plugin, stamping each item with its plugin's name."""
    items = []
    hook = getattr(manager.hook, hook_name)
    for impl in hook.get_hookimpls():
        for item in impl.function() or ():
            items.append(dataclasses.replace(item, plugin=impl.plugin_name))
    return items


def sources(manager: pluggy.PluginManager) -> dict[str, Source]:
    """Every installed source by each of its names (upper case).

    Raises:
      ValueError: two plugins claim the same name.
    """
    by_name: dict[str, Source] = {}
    for source in _collect(manager, "fairq_register_sources"):
        for name in source.names:
            if name in by_name and by_name[name] != source:
                raise ValueError(
                    f"source {name!r} is registered by both {by_name[name].plugin} and {source.plugin}"
                )
            by_name[name] = source
    return by_name


def channels(manager: pluggy.PluginManager) -> dict[str, Channel]:
    """Every installed campaign channel by name.

    Raises:
      ValueError: two plugins claim the same name.
    """
    by_name: dict[str, Channel] = {}
    for channel in _collect(manager, "fairq_register_channels"):
        if channel.name in by_name:
            raise ValueError(
                f"channel {channel.name!r} is registered by both "
                f"{by_name[channel.name].plugin} and {channel.plugin}"
            )
        by_name[channel.name] = channel
    return by_name
