"""A campaign created under `fairq up` with no server at all runs to completion."""
import json
import time

from tests.test_embedded import get


def test_a_campaign_runs_on_the_embedded_default(fairq_up):  # noqa: F811
    base, _, _ = fairq_up
    user = {"tenant_id": "tenant-123", "email": "user@example.com", "password": "secret123"}
    assert get(base + "/register", data=user)[0] == 201
    token = json.loads(get(base + "/login", data=user)[2])["access_token"]
    status, headers, body = get(base + "/campaigns", token=token,
                                data={"name": "Tenant launch", "description": "Welcome campaign"})
    assert status == 201, body
    campaign = json.loads(body)
    status, _, body = get(base + "/campaigns", token=token,
                          data={"name": "Hello", "message": "Hi {name}", "recipients": [{"name": "Asha"}, {"name": "Ravi"}]})
    assert status == 201, body
    second = json.loads(body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = [json.loads(get(f"{base}/campaigns/{c['id']}", token=token)[2]) for c in (campaign, second)]
        if all(s["status"] == "completed" for s in shown):
            break
        time.sleep(0.2)
    assert [s["status"] for s in shown] == ["completed", "completed"], shown
    assert shown[0]["counts"] == {"recipients": 1, "delivered": 1, "failed": 0, "retrying": 0}
    assert shown[0]["log"][0]["payload"]["message"] == "Tenant launch"  # the seed's simulated execution
    assert sorted(entry["payload"]["message"] for entry in shown[1]["log"]) == ["Hi Asha", "Hi Ravi"]
