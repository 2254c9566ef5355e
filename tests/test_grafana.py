"""deploy/grafana/fairq.json: valid Grafana JSON whose every query names metrics fairq exports."""
import json
import re

import pytest

from app.metrics import exported_names
from tests.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "fairq.json"
#: PromQL words that are not metric names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (``label_values(metric, label)`` too)."""
    if expr.startswith("label_values("):
        return {expr[len("label_values("):].split(",")[0].strip()}
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue  # a function or an operator
        names.add(match.group())
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(dashboard: dict) -> list[str]:
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [var["query"]["query"] for var in dashboard["templating"]["list"] if var["type"] == "query"]
    return found


def test_the_dashboard_is_grafana_json(dashboard):
    assert dashboard["title"] == "fairq" and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"  # works imported and provisioned alike
    assert {"datasource", "tenant"} <= {var["name"] for var in dashboard["templating"]["list"]}


def test_every_query_names_a_metric_fairq_exports(dashboard):
    exported = exported_names()
    for expr in queries(dashboard):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} reads {sorted(names - exported)}, which fairq does not export"


def test_the_dashboard_shows_what_operators_need(dashboard):
    read = set().union(*(metric_names(expr) for expr in queries(dashboard)))
    titles = " ".join(panel["title"] for panel in dashboard["panels"])
    assert "fairq_job_wait_seconds_bucket" in read and "Wait p99" in titles
    assert {"fairq_tenant_worker_share", "fairq_tenant_entitlement"} <= read
    assert {"fairq_job_outcomes_total", "fairq_job_deferrals_total", "fairq_jobs_dead"} <= read


def test_the_name_check_catches_a_metric_that_does_not_exist():
    assert metric_names('sum by (tenant, le) (rate(fairq_nope_total{tenant=~"a|b"}[$__rate_interval])) > 0.5') == {
        "fairq_nope_total"}
    assert metric_names("max by (t) (a_metric) / max by (t) (b_metric > 0)") == {"a_metric", "b_metric"}
    assert "fairq_nope_total" not in exported_names()
