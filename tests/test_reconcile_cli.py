"""fairq reconcile --tenant T --source S --from D --to D: enqueue, follow with a progress bar, summarise."""
import pytest

from app.tenancy import service
from tests.conftest import ROOT, run_fairq
from tests.test_reconcile_support import add

PERIOD = ("--from", "2026-11-01", "--to", "2026-11-07")


def test_reconcile_and_follow_it(worker):
    service.create_tenant("acme")
    add("acme", "internal", "PAY", "100.00", reference="500000000001")
    add("acme", "external", "PAY", "100.00", reference="500000000001")
    add("acme", "external", "BANK-ONLY", "7.50", reference="500000000002")
    result = run_fairq("reconcile", "--tenant", "acme", "--source", "upi", *PERIOD, "--amount-tolerance", "0.10",
                       cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "run 1: job 1 queued" in result.stdout
    assert "matched 1 (100.00); breaks: missing_internal 1; unmatched: ledger 0.00, bank 7.50" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tenant", "acme", "--source", "SWIFT", *PERIOD), "UPI"),
        (("--tenant", "acme", "--source", "UPI", "--from", "2026-11-08", "--to", "2026-11-07"), "is after"),
        (("--tenant", "nope", "--source", "UPI", *PERIOD), "no tenant nope"),
        (("--tenant", "acme", "--source", "UPI", *PERIOD, "--amount-tolerance", "abc"), "not an amount"),
        (("--tenant", "acme", "--source", "UPI", "--from", "1 Nov", "--to", "2026-11-07"), "1 Nov"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(db, args, message):
    service.create_tenant("acme")
    result = run_fairq("reconcile", *args, "--no-wait", cwd=ROOT)
    assert result.returncode == 2 and message in result.stderr, result.stderr
