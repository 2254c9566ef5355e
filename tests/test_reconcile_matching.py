"""Matching, outcome by outcome, from small hand-written fixtures: on PostgreSQL and on SQLite."""
from datetime import date, timedelta

from tests.test_reconcile_support import RRN, add, at, backend, both, breaks, kinds, reconcile, tenant  # noqa: F401


def test_a_clean_pair_is_matched_and_the_sides_only_one_has_are_missing(backend):
    t = tenant()
    both(t, "OK1", "100.00", reference=RRN(1))
    add(t, "internal", "MI1", "5.00", reference=RRN(2))
    add(t, "external", "ME1", "7.00", reference=RRN(3))
    _run, summary = reconcile(t)
    assert kinds(t) == [("missing_external", "MI1", None), ("missing_internal", None, "ME1")]
    assert summary["matched"] == {"count": 1, "external_count": 1, "amount": "100.00"}
    assert summary["unmatched_amount"] == {"internal": "5.00", "external": "7.00"}
    assert summary["breaks"]["missing_internal"] == 1 and summary["total_breaks"] == 2


def test_amount_tolerance_exactly_at_matches_and_one_paisa_over_breaks(backend):
    t = tenant()
    add(t, "internal", "AT", "100.50", reference=RRN(1))
    add(t, "external", "AT", "100.00", reference=RRN(1))
    add(t, "internal", "OVER", "1000.07", reference=RRN(2))
    add(t, "external", "OVER", "1000.58", reference=RRN(2))
    reconcile(t, tolerance="0.50")
    [only] = breaks(t)
    assert (only.mismatch_type, only.internal_txn_id) == ("amount_mismatch", "OVER")
    assert only.notes.startswith("Amounts differ by 0.51 (tolerance 0.50): ledger 1000.07, bank 1000.58.")
    assert "Rule: RRN." in only.notes
    assert "2026-11-03 10:00 UTC" in only.notes and only.notes.count("SUCCESS") == 2


def test_date_tolerance_exactly_at_matches_and_a_minute_over_drifts(backend):
    t = tenant()
    add(t, "internal", "AT", "10.00", reference=RRN(1), when=at(2))
    add(t, "external", "AT", "10.00", reference=RRN(1), when=at(4))
    add(t, "internal", "OVER", "10.00", reference=RRN(2), when=at(2))
    add(t, "external", "OVER", "10.00", reference=RRN(2), when=at(4, 10, 1))
    reconcile(t, hours=48)
    [only] = breaks(t)
    assert (only.mismatch_type, only.internal_txn_id) == ("date_drift", "OVER")
    assert only.notes.startswith("Dates differ by 48.0 h (tolerance 48 h): ledger 2026-11-02 10:00 UTC, "
                                 "bank 2026-11-04 10:01 UTC.")


def test_status_mismatch_but_not_while_a_pending_payment_is_within_its_grace_window(backend):
    t = tenant()
    add(t, "internal", "DEEMED", "10.00", reference=RRN(1), status="PENDING", when=at(1))
    add(t, "external", "DEEMED", "10.00", reference=RRN(1), status="SUCCESS", when=at(1))
    add(t, "internal", "FRESH", "10.00", reference=RRN(2), status="PENDING", when=at(6))
    add(t, "external", "FRESH", "10.00", reference=RRN(2), status="SUCCESS", when=at(6))
    add(t, "internal", "FRESH-ONLY", "10.00", reference=RRN(3), status="PENDING", when=at(6))
    _run, summary = reconcile(t, now=at(7))  # the UPI plugin's grace: 48 h
    [only] = breaks(t)
    assert (only.mismatch_type, only.internal_txn_id) == ("status_mismatch", "DEEMED")
    assert only.notes.startswith("Statuses differ: ledger PENDING, bank SUCCESS.")
    assert summary["pending_in_grace"] == 2
    # two days on, the window has passed: both are breaks now
    reconcile(t, now=at(9))
    assert kinds(t) == [("missing_external", "FRESH-ONLY", None), ("status_mismatch", "DEEMED", "DEEMED"),
                        ("status_mismatch", "FRESH", "FRESH")]


def test_the_grace_window_is_configurable_per_rail(backend):
    from app.settings import Settings, get_settings, use_settings

    t = tenant()
    add(t, "internal", "P", "10.00", reference=RRN(1), status="PENDING", when=at(6))
    add(t, "external", "P", "10.00", reference=RRN(1), status="SUCCESS", when=at(6))
    use_settings(Settings.load(**{**get_settings().model_dump(), "reconcile_grace_hours": {"upi": 0}}))
    reconcile(t, now=at(7))
    assert kinds(t) == [("status_mismatch", "P", "P")]


def test_the_same_payment_twice_on_one_side_is_a_duplicate_and_the_first_still_pairs(backend):
    t = tenant()
    both(t, "PAY", "250.00", reference=RRN(1), when=at(3, 10))
    add(t, "internal", "PAY-AGAIN", "250.00", reference=RRN(1), when=at(3, 11))
    reconcile(t)
    [only] = breaks(t)
    assert (only.mismatch_type, only.internal_txn_id, only.external_txn_id) == ("duplicate", "PAY-AGAIN", None)
    assert only.notes.startswith(f"The same payment twice: the same RRN {RRN(1)} as PAY in the ledger.")


def test_a_key_twice_on_one_side_and_absent_on_the_other_reports_both_rows(backend):
    # Given an RRN held twice in the ledger and not in the bank file, and another the other way round
    t = tenant()
    add(t, "internal", "PAY", "40.00", reference=RRN(1), when=at(3, 10))
    add(t, "internal", "PAY-AGAIN", "40.00", reference=RRN(1), when=at(3, 11))
    add(t, "external", "BANK", "60.00", reference=RRN(2), when=at(4, 10))
    add(t, "external", "BANK-AGAIN", "60.00", reference=RRN(2), when=at(4, 11))
    # When they are reconciled
    _run, summary = reconcile(t)
    # Then each first row is missing on the other side and each second one is its duplicate
    assert kinds(t) == [("duplicate", None, "BANK-AGAIN"), ("duplicate", "PAY-AGAIN", None),
                        ("missing_external", "PAY", None), ("missing_internal", None, "BANK")]
    assert summary["unmatched_amount"] == {"internal": "40.00", "external": "60.00"}


def test_a_payment_reversed_in_the_bank_file_but_not_in_the_ledger(backend):
    t = tenant()
    add(t, "internal", "PAY", "500.00", reference=RRN(1), direction="DR", when=at(3))
    add(t, "external", "PAY", "500.00", reference=RRN(1), direction="DR", when=at(3))
    add(t, "external", "REV", "500.00", reference=RRN(1), direction="CR", when=at(4))
    # reversed on both sides: the books agree
    add(t, "internal", "PAY2", "80.00", reference=RRN(2), direction="DR", when=at(3))
    add(t, "internal", "REV2", "80.00", reference=RRN(2), direction="CR", when=at(3, 12))
    add(t, "external", "PAY2", "80.00", reference=RRN(2), direction="DR", when=at(3))
    add(t, "external", "REV2", "80.00", reference=RRN(2), direction="CR", when=at(3, 12))
    reconcile(t)
    [only] = breaks(t)
    assert (only.mismatch_type, only.internal_txn_id, only.external_txn_id) == ("reversed", "PAY", "PAY")
    assert only.notes.startswith("Paid, then reversed: reversed in the bank / switch file by REV on "
                                 "2026-11-04 10:00 UTC.")


def test_a_key_missing_on_one_side_falls_back_to_amount_date_and_counterparty(backend):
    t = tenant()
    add(t, "internal", "ORD-1", "120.00", counterparty="ravi@okaxis", when=at(3, 10))
    add(t, "external", "UPI-1", "120.00", reference=RRN(1), counterparty="ravi@okaxis", when=at(3, 12))
    add(t, "internal", "ORD-2", "99.00", counterparty="meena@ybl", status="PENDING", when=at(2))
    add(t, "external", "UPI-2", "99.00", reference=RRN(2), counterparty="meena@ybl", when=at(2))
    reconcile(t)
    [only] = breaks(t)
    assert (only.mismatch_type, only.internal_txn_id, only.external_txn_id) == ("status_mismatch", "ORD-2", "UPI-2")
    assert "Rule: amount + date + counterparty." in only.notes


def test_more_than_one_candidate_is_ambiguous_never_a_guess(backend):
    t = tenant()
    add(t, "internal", "ORD-1", "120.00", counterparty="ravi@okaxis", when=at(3, 10))
    add(t, "external", "UPI-1", "120.00", reference=RRN(1), counterparty="ravi@okaxis", when=at(3, 9))
    add(t, "external", "UPI-2", "120.00", reference=RRN(2), counterparty="ravi@okaxis", when=at(3, 11))
    reconcile(t)
    assert kinds(t) == [("ambiguous", None, "UPI-1"), ("ambiguous", None, "UPI-2"), ("ambiguous", "ORD-1", None)]
    [ledger] = breaks(t, internal_txn_id="ORD-1")
    assert ledger.notes.startswith("2 candidates in the bank / switch file with the amount, date and counterparty "
                                   "of this row, or candidates shared with other rows: UPI-1, UPI-2; not matched")


def test_two_rows_with_rrns_are_never_paired_by_the_fallback(backend):
    t = tenant()
    add(t, "internal", "A", "120.00", reference=RRN(1), counterparty="ravi@okaxis")
    add(t, "external", "B", "120.00", reference=RRN(2), counterparty="ravi@okaxis")
    reconcile(t)
    assert kinds(t) == [("missing_external", "A", None), ("missing_internal", None, "B")]


def test_the_upi_transaction_id_pairs_when_the_rrn_is_missing(backend):
    t = tenant()
    add(t, "internal", "HDF0001", "75.00")
    add(t, "external", "HDF0001", "70.00", reference=RRN(1))
    reconcile(t)
    [only] = breaks(t)
    assert (only.mismatch_type, only.rule) == ("amount_mismatch", "UPI transaction id")


def test_an_rrn_seen_again_weeks_later_is_another_payment(backend):
    # an RRN's one-digit year repeats every decade; the UPI plugin pairs it within 30 days only
    t = tenant()
    add(t, "internal", "OLD", "10.00", reference=RRN(1), when=at(2))
    add(t, "external", "NEW", "10.00", reference=RRN(1), when=at(2) + timedelta(days=31))
    add(t, "internal", "LATE", "10.00", reference=RRN(2), when=at(2))
    add(t, "external", "LATE", "10.00", reference=RRN(2), when=at(2) + timedelta(days=29))
    reconcile(t, period=(date(2026, 11, 1), date(2026, 12, 31)))
    assert kinds(t) == [("date_drift", "LATE", "LATE"), ("missing_external", "OLD", None),
                        ("missing_internal", None, "NEW")]


def test_one_settlement_credit_against_many_payments_netting_fees(backend):
    t = tenant()
    for n, amount in enumerate(("100.00", "150.00", "50.00")):
        add(t, "internal", f"PAY-{n}", amount, reference=RRN(n), settlement_date=date(2026, 11, 4), when=at(3, 9 + n))
    add(t, "external", "SETTLE-04", "294.00", settlement_date=date(2026, 11, 4), when=at(4, 18))  # 2 % fee
    for n, amount in enumerate(("100.00", "200.00")):
        add(t, "internal", f"PAY-5{n}", amount, reference=RRN(50 + n), settlement_date=date(2026, 11, 5),
            when=at(4, 9 + n))
    add(t, "external", "SETTLE-05", "290.00", settlement_date=date(2026, 11, 5), when=at(5, 18))  # 3.3 %
    _run, summary = reconcile(t)
    [only] = breaks(t)
    assert (only.mismatch_type, only.internal_txn_id, only.external_txn_id) == ("amount_mismatch", None, "SETTLE-05")
    assert only.notes.startswith("the settlement of 2026-11-05 is 290.00 against 2 payments in the ledger summing "
                                 "300.00: the difference 10.00 is not a fee of 0 to 2 %.")
    assert summary["matched"] == {"count": 3, "external_count": 1, "amount": "300.00"}
    assert summary["in_unmatched_settlements"] == 2


def test_rows_outside_the_period_are_not_breaks(backend):
    t = tenant()
    # the period is in the files' time zone (Asia/Kolkata): 31 Oct 18:30 UTC to 7 Nov 18:30 UTC
    add(t, "internal", "BEFORE", "10.00", reference=RRN(1), when=at(1, 0) - timedelta(hours=6))
    add(t, "external", "AFTER", "10.00", reference=RRN(2), when=at(7, 18, 30))
    add(t, "internal", "EDGE", "10.00", reference=RRN(3), when=at(7, 18, 29))
    add(t, "external", "EDGE", "10.00", reference=RRN(3), when=at(7, 20))  # its partner just after: still a pair
    _run, summary = reconcile(t, period=(date(2026, 11, 1), date(2026, 11, 7)))
    assert kinds(t) == [] and summary["matched"]["count"] == 1


def test_neft_matches_by_utr_and_falls_back_on_the_account(backend):
    t = tenant()
    both(t, "HDFCN52025080498765432", "48500.00", reference="HDFCN52025080498765432", source="NEFT",
         counterparty="SBIN0001234/30214587961", direction="DR")
    add(t, "internal", "PV-0812", "2499.00", source="NEFT", counterparty="SBIN0001111/4521", direction="DR")
    add(t, "external", "h:1234", "2499.00", source="NEFT", counterparty="SBIN0001111/4521", direction="DR",
        when=at(3, 15))
    add(t, "external", "HDFCN52025082155512345", "62000.00", reference="HDFCN52025082155512345", source="NEFT")
    reconcile(t, source="imps")
    assert kinds(t) == [("missing_internal", None, "HDFCN52025082155512345")]
    assert breaks(t)[0].source == "NEFT"
