"""The plugin is installed and discovered through its entry point; its channels and job kinds."""
import importlib.metadata

from app import hooks


def test_installed_and_discovered():
    assert importlib.metadata.version("fairq-campaigns")
    manager = hooks.get_plugin_manager()
    assert manager.get_plugin("campaigns") is not None
    assert manager.get_plugin("campaigns").__name__ == "fairq_campaigns"


def test_registers_the_log_and_webhook_channels():
    found = hooks.channels(hooks.get_plugin_manager())
    assert found["log"].plugin == "campaigns" and found["log"].deliver is not None
    assert found["webhook"].needs_webhook and not found["log"].needs_webhook


def test_registers_the_execution_job_kinds():
    kinds = hooks.job_kinds(hooks.get_plugin_manager())
    assert set(kinds) == {"campaign.run", "campaign.deliver"}
    assert kinds["campaign.deliver"].max_retries == 4 and kinds["campaign.deliver"].plugin == "campaigns"


def test_the_workers_declare_them():
    import app.tasks  # noqa: F401
    from app.scheduling.kinds import kinds

    assert {"campaign.run", "campaign.deliver"} <= set(kinds())


def test_the_log_channel_sends_nothing_anywhere():
    delivery = hooks.Delivery(tenant_id="t", campaign_id=1, campaign_name="c", run=1, recipient=0, data={},
                              message="m", delivery_id="1:1:0")
    assert hooks.channels(hooks.get_plugin_manager())["log"].deliver(delivery) == {"simulated": True}
