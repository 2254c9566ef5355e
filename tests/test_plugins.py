"""Plugins are real: found through their entry points; the core never imports one."""
import ast
import importlib.metadata
import re
from pathlib import Path

import pluggy
import pytest

from app import hooks
from tests.conftest import ROOT

BUNDLED = {"csv_upi": "fairq_csv_upi", "csv_neft": "fairq_csv_neft", "campaigns": "fairq_campaigns"}


def test_bundled_plugins_are_declared_as_entry_points():
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=hooks.ENTRY_POINT_GROUP)}
    assert BUNDLED.items() <= found.items()


def test_the_plugin_manager_discovers_installed_plugins():
    manager = hooks.get_plugin_manager()
    names = {name for name, _ in manager.list_name_plugin()}
    assert set(BUNDLED) <= names
    assert set(hooks.sources(manager)) >= {"UPI", "NEFT", "IMPS", "RTGS"}
    assert "log" in hooks.channels(manager)


def test_without_entry_points_nothing_is_registered():
    manager = hooks.get_plugin_manager(load_entry_points=False)
    assert hooks.sources(manager) == {}


def test_the_core_imports_no_plugin():
    plugin_modules = set(BUNDLED.values())
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in plugin_modules]
    assert offenders == []


def test_plugins_import_only_the_public_hooks_module():
    for folder in BUNDLED.values():
        for path in (ROOT / "plugins").glob(f"*/{folder}/**/*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app"):
                    assert node.module == "app.hooks", f"{path} imports {node.module}"


def test_every_hook_is_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    specs = [name for name in dir(hooks.FairqSpecs) if name.startswith("fairq_")]
    assert specs
    for name in specs:
        assert re.search(rf"^### `{name}", docs, re.MULTILINE), f"{name} is not documented"


class _Plugin:
    def __init__(self, source_name):
        self.source_name = source_name

    @hooks.hookimpl
    def fairq_register_sources(self):
        return [hooks.Source(name=self.source_name)]


def test_two_plugins_claiming_one_source_name_is_an_error():
    manager = hooks.get_plugin_manager(load_entry_points=False)
    manager.register(_Plugin("UPI"), name="one")
    manager.register(_Plugin("upi"), name="two")
    with pytest.raises(ValueError, match="both one and two"):
        hooks.sources(manager)


def test_a_plugin_implementing_an_unknown_hook_is_refused():
    class Typo:
        @hooks.hookimpl
        def fairq_register_sauces(self):
            return []

    manager = hooks.get_plugin_manager(load_entry_points=False)
    with pytest.raises(pluggy.PluginValidationError):
        manager.register(Typo())
        manager.check_pending()


def test_fairq_plugins_lists_what_each_plugin_provides():
    from tests.conftest import run_fairq

    result = run_fairq("plugins")
    assert result.returncode == 0, result.stderr
    assert "source  UPI" in result.stdout and "channel log" in result.stdout
