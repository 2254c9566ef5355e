"""Matching rules come from plugins through a hook; the core hard-codes no rail."""
import pytest

from app import hooks
from app.errors import Invalid
from tests.test_reconcile_support import add, at, backend, breaks, kinds, reconcile, tenant  # noqa: F401


def test_the_bundled_plugins_give_rules_for_upi_and_neft():
    rules = hooks.match_rules(hooks.get_plugin_manager())
    assert [k.label for k in rules["UPI"].keys] == ["RRN", "UPI transaction id"]
    assert rules["UPI"].keys[0].window_hours == 720 and rules["UPI"].grouping.many == "internal"
    assert [k.label for k in rules["NEFT"].keys] == ["UTR"] and rules["NEFT"].plugin == "csv_neft"


class _Pipes:
    """A third-party source whose rules pair rows by txn_id alone, with no fallback."""

    def __init__(self, *, rules: bool = True, key: str = "txn_id", grouping=None) -> None:
        self.rules, self.key, self.grouping = rules, key, grouping

    @hooks.hookimpl
    def fairq_register_sources(self):
        return [hooks.Source(name="PIPES", parse=lambda stream, context: iter(()))]

    @hooks.hookimpl
    def fairq_register_match_rules(self):
        if not self.rules:
            return []
        return [hooks.MatchRules(source="pipes", keys=(hooks.MatchKey(self.key, "pipe id"),), fallback=(),
                                 grouping=self.grouping)]


@pytest.fixture
def plugins(monkeypatch):
    """Plugins registered by hand instead of the installed ones: ``plugins(obj, ...)``."""
    import app.ingest.sources
    import app.reconcile.rules

    def use(*objects):
        def manager(**_kwargs):
            built = hooks.get_plugin_manager(load_entry_points=False)
            for number, obj in enumerate(objects):
                built.register(obj, name=f"plugin{number}")
            return built

        monkeypatch.setattr(app.ingest.sources, "get_plugin_manager", manager)
        monkeypatch.setattr(app.reconcile.rules, "get_plugin_manager", manager)

    return use


def test_a_third_party_sources_rules_drive_the_matching(backend, plugins):
    plugins(_Pipes())
    t = tenant()
    for ledger in ("internal", "external"):
        add(t, ledger, "P-1", "10.00", source="PIPES")
    add(t, "internal", "P-2", "3.00", source="PIPES", when=at(4), counterparty="x@ybl")
    add(t, "external", "P-3", "3.00", source="PIPES", when=at(4), counterparty="x@ybl")  # no fallback declared
    _run, summary = reconcile(t, source="pipes")
    assert kinds(t) == [("missing_external", "P-2", None), ("missing_internal", None, "P-3")]
    assert summary["matched"]["count"] == 1
    assert "no bank / switch row matches it by pipe id." in breaks(t, internal_txn_id="P-2")[0].notes


def test_a_source_without_rules_cannot_be_reconciled(db, plugins):
    from app.reconcile.rules import find_rules

    plugins(_Pipes(rules=False))
    with pytest.raises(Invalid) as raised:
        find_rules("PIPES")
    assert raised.value.slug == "no-matching-rules" and raised.value.extra["sources"] == []


def test_two_plugins_giving_rules_for_one_source_is_an_error(plugins):
    manager = hooks.get_plugin_manager(load_entry_points=False)
    manager.register(_Pipes(), name="one")
    manager.register(_Pipes(), name="two")
    with pytest.raises(ValueError, match="both one and two"):
        hooks.match_rules(manager)


def test_rules_naming_a_column_that_cannot_be_a_key_are_refused(db, plugins):
    plugins(_Pipes(key="amount"))
    t = tenant()
    with pytest.raises(ValueError, match="'amount' cannot be a key"):
        reconcile(t, source="pipes")


def test_one_ledger_entry_against_many_bank_rows_when_the_plugin_groups_that_way(backend, plugins):
    from datetime import date
    from decimal import Decimal

    # Given a rail whose bank file splits a payout the ledger books once (many = external)
    plugins(_Pipes(key="reference", grouping=hooks.SettlementGrouping(many="external",
                                                                     max_fee_percent=Decimal("1"))))
    t = tenant()
    add(t, "internal", "PAYOUT-9", "1000.00", source="PIPES", settlement_date=date(2026, 11, 5), when=at(5))
    for n, amount in enumerate(("400.00", "350.00", "245.00")):  # 995.00: a 0.5 % fee
        add(t, "external", f"PART-{n}", amount, reference=f"R{n}", source="PIPES",
            settlement_date=date(2026, 11, 5), when=at(5, 12))
    _run, summary = reconcile(t, source="pipes")
    assert kinds(t) == []
    assert summary["matched"] == {"count": 1, "external_count": 3, "amount": "1000.00"}
