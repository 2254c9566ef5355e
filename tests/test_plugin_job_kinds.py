"""Hook ``fairq_register_job_kinds``: a third-party plugin's job kind is declared behind the gate."""
import pytest

from app import hooks
from app.scheduling.kinds import declare_plugin_kinds, kinds


class _Plugin:
    def __init__(self, name):
        self.name = name

    @hooks.hookimpl
    def fairq_register_job_kinds(self):
        return [hooks.JobKindSpec(name=self.name, run=lambda job: {"ok": True}, max_retries=1, time_limit=5)]

    @hooks.hookimpl
    def fairq_register_channels(self):
        return [hooks.Channel(name="sms")]


def test_a_plugins_job_kind_is_declared_once():
    import app.tasks  # noqa: F401  (the broker)

    manager = hooks.get_plugin_manager(load_entry_points=False)
    manager.register(_Plugin("test.thirdparty"), name="thirdparty")
    assert declare_plugin_kinds(manager) == ["test.thirdparty"]
    assert declare_plugin_kinds(manager) == []  # asked again: already declared
    declared = kinds()["test.thirdparty"]
    assert (declared.max_retries, declared.time_limit, declared.actor.actor_name) == (1, 5, "fairq_job_test_thirdparty")


def test_two_plugins_claiming_one_kind_or_channel_is_an_error():
    manager = hooks.get_plugin_manager(load_entry_points=False)
    manager.register(_Plugin("x.same"), name="one")
    manager.register(_Plugin("x.same"), name="two")
    with pytest.raises(ValueError, match="job kind 'x.same' is registered by both one and two"):
        hooks.job_kinds(manager)
    with pytest.raises(ValueError, match="channel 'sms' is registered by both one and two"):
        hooks.channels(manager)
