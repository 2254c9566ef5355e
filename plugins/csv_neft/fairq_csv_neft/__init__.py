"""fairq source plugin for NEFT bank statements (IMPS and RTGS share the layout)."""
from app.hooks import Source, hookimpl
from fairq_csv_neft.parser import parse

__all__ = ["fairq_register_sources"]


@hookimpl
def fairq_register_sources() -> list[Source]:
    return [
        Source(
            name="NEFT",
            aliases=("IMPS", "RTGS"),
            description="NEFT / IMPS / RTGS bank statement (CSV)",
            parse=parse,
        )
    ]
