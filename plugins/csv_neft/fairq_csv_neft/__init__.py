"""fairq source plugin for NEFT bank statements (IMPS and RTGS share the layout)."""
from app.hooks import MatchKey, MatchRules, Source, hookimpl
from fairq_csv_neft.parser import parse

__all__ = ["fairq_register_sources", "fairq_register_match_rules", "RULES"]

#: How NEFT / IMPS / RTGS rows reconcile: by normalised UTR (it carries its own date), else by
#: amount, date window and counterparty (``IFSC/account``); a pending transfer gets 2 hours
#: (NEFT settles in half-hourly batches).
RULES = MatchRules(
    source="NEFT",
    keys=(MatchKey("reference", "UTR"),),
    fallback=("counterparty",),
    pending_grace_hours=2,
)


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


@hookimpl
def fairq_register_match_rules() -> list[MatchRules]:
    return [RULES]
