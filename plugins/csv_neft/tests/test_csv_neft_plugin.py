"""The plugin is installed and discovered through its entry point."""
import importlib.metadata

from app import hooks


def test_installed_and_discovered():
    assert importlib.metadata.version("fairq-csv-neft")
    manager = hooks.get_plugin_manager()
    assert manager.get_plugin("csv_neft") is not None
    assert manager.get_plugin("csv_neft").__name__ == "fairq_csv_neft"


def test_registers_neft_with_its_aliases():
    found = hooks.sources(hooks.get_plugin_manager())
    assert found["NEFT"] is found["IMPS"] is found["RTGS"]
    assert found["NEFT"].plugin == "csv_neft"


def test_registers_the_neft_matching_rules():
    rules = hooks.match_rules(hooks.get_plugin_manager())["NEFT"]
    assert rules.plugin == "csv_neft" and [k.label for k in rules.keys] == ["UTR"]
