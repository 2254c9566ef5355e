"""The plugin is installed and discovered through its entry point."""
import importlib.metadata

from app import hooks


def test_installed_and_discovered():
    assert importlib.metadata.version("fairq-campaigns")
    manager = hooks.get_plugin_manager()
    assert manager.get_plugin("campaigns") is not None
    assert manager.get_plugin("campaigns").__name__ == "fairq_campaigns"


def test_registers_the_log_channel():
    assert hooks.channels(hooks.get_plugin_manager())["log"].plugin == "campaigns"
