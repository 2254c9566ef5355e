from tests.test_reconcile_support import *  # noqa

def test_smoke(backend):
    t = tenant()
    both(t, "OK1", "100.00", reference="500000000001")
    add(t, "internal", "AM1", "101.00", reference="500000000002")
    add(t, "external", "AM1", "100.00", reference="500000000002")
    add(t, "internal", "MI1", "5.00", reference="500000000003")
    add(t, "external", "ME1", "7.00", reference="500000000004")
    run_id, summary = reconcile(t)
    print(backend, summary)
    for b in breaks(t):
        print(b.mismatch_type, b.internal_txn_id, b.external_txn_id, b.notes)
    assert 0
