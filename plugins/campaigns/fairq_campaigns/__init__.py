"""fairq plugin for campaign execution and its delivery channels."""
from app.hooks import Channel, hookimpl

__all__ = ["fairq_register_channels"]


@hookimpl
def fairq_register_channels() -> list[Channel]:
    return [Channel(name="log", description="record each delivery in the processing log")]
