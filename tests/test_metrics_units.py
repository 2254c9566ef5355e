"""The pieces of the metrics that need no server: the tenant label cap and the share window."""
import pytest

from app.metrics.labels import OTHER, TenantLabels
from app.metrics.share import ShareWindow, shares


def test_tenants_beyond_the_cap_are_other():
    labels = TenantLabels(2)
    assert [labels.label(t) for t in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]


def test_a_ranking_decides_who_keeps_a_label_and_frees_room():
    labels = TenantLabels(2)
    labels.label("a"), labels.label("b")
    labels.rank(["c", "b", "a"])  # busiest first: a drops out
    assert [labels.label(t) for t in ("c", "b", "a")] == ["c", "b", OTHER]
    labels.rank(["c"])  # room again: the next newcomer is labelled at once
    assert labels.label("z") == "z" and labels.label("y") == OTHER


def test_a_failing_ranking_keeps_the_labels(caplog):
    now = [0.0]

    def broken():
        raise RuntimeError("database down")

    labels = TenantLabels(1, ranking=broken, clock=lambda: now[0])
    labels._refresh()
    assert labels.label("a") == "a" and "could not rank tenants" in caplog.text


def test_the_share_window_forgets_what_is_older_than_the_window():
    now = [0.0]
    window = ShareWindow(60, slots=6, clock=lambda: now[0])
    window.add("a", 3.0)
    now[0] = 30
    window.add("b", 1.0)
    window.add("a", 1.0)
    assert window.seconds() == {"a": 4.0, "b": 1.0}
    now[0] = 65  # a's first 3 s (at t=0) left the window
    assert window.seconds() == {"a": 1.0, "b": 1.0}
    now[0] = 200
    assert window.seconds() == {}


def test_share_against_entitlement():
    # a (weight 3) and b (weight 1) ran; c (weight 4) only waits; d is idle and not counted
    result = shares({"a": 6.0, "b": 2.0}, {"a": 3, "b": 1, "c": 4, "d": 10}, busy={"c"})
    assert result == {"a": (0.75, 3 / 8), "b": (0.25, 1 / 8), "c": (0.0, 4 / 8)}
    assert shares({}, {"a": 1}, busy=()) == {}


def test_a_share_window_needs_a_positive_window():
    with pytest.raises(ValueError):
        ShareWindow(0)
