"""fairq source plugin for UPI switch and settlement reports."""
from decimal import Decimal

from app.hooks import MatchKey, MatchRules, SettlementGrouping, Source, hookimpl
from fairq_csv_upi.parser import parse, stage

__all__ = ["fairq_register_sources", "fairq_register_match_rules", "RULES"]

#: How UPI rows reconcile: by RRN within 30 days (its one-digit year repeats every decade), then
#: by UPI transaction id; bulk settlement credits against the day's payments, fees netted up to
#: 2 %; a pending ("deemed") payment is not a break until its T+1 settlement window (48 h) passed.
RULES = MatchRules(
    source="UPI",
    keys=(MatchKey("reference", "RRN", window_hours=30 * 24), MatchKey("txn_id", "UPI transaction id")),
    fallback=("counterparty",),
    grouping=SettlementGrouping(many="internal", max_fee_percent=Decimal("2")),
    pending_grace_hours=48,
)


@hookimpl
def fairq_register_sources() -> list[Source]:
    return [Source(name="UPI", description="UPI switch / settlement report (CSV)", parse=parse,
                   stage=stage)]


@hookimpl
def fairq_register_match_rules() -> list[MatchRules]:
    return [RULES]
