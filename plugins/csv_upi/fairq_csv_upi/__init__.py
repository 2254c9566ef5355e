"""fairq source plugin for UPI switch and settlement reports."""
from app.hooks import Source, hookimpl
from fairq_csv_upi.parser import parse

__all__ = ["fairq_register_sources"]


@hookimpl
def fairq_register_sources() -> list[Source]:
    return [Source(name="UPI", description="UPI switch / settlement report (CSV)", parse=parse)]
