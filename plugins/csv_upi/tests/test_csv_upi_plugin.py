"""The plugin is installed and discovered through its entry point."""
import importlib.metadata

from app import hooks


def test_installed_and_discovered():
    assert importlib.metadata.version("fairq-csv-upi")
    manager = hooks.get_plugin_manager()
    assert manager.get_plugin("csv_upi") is not None
    assert manager.get_plugin("csv_upi").__name__ == "fairq_csv_upi"


def test_registers_the_upi_source():
    assert hooks.sources(hooks.get_plugin_manager())["UPI"].plugin == "csv_upi"


def test_registers_the_upi_matching_rules():
    rules = hooks.match_rules(hooks.get_plugin_manager())["UPI"]
    assert rules.plugin == "csv_upi" and rules.keys[0].column == "reference"
