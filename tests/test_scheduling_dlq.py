"""Dead letters: ``/admin/dlq``, ``fairq dlq`` and the broker's dead-letter queues (real servers)."""
import json
from types import SimpleNamespace

import pytest

import app.tasks  # noqa: F401  (the job kinds)
from app.db import utcnow
from app.scheduling import dlq
from app.scheduling.jobs import dedicated_queue
from app.scheduling.kinds import JOBS_QUEUE, kinds
from app.scheduling.models import Job
from app.tenancy import service
from app.tenancy.scoping import tenant_session
from tests.helpers import PASSWORD, assert_cross_tenant_404, assert_operator_only, invite, job_row, login, sign_up


def dead(tenant_id: str, kind: str = "noop", *, queue: str | None = None) -> int:
    """A job with no retry left, as the gate leaves it; returns its id."""
    with tenant_session(tenant_id) as session:
        job = Job(tenant_id=tenant_id, kind=kind, state="dead", payload={"n": 1}, attempts=3, max_retries=2,
                  queue=queue, last_error="RuntimeError('downstream is down')", finished_at=utcnow())
        session.add(job)
        session.flush()
        return job.id


@pytest.fixture
def story(client):
    """Two tenants with dead jobs (acme: a ``noop`` and a ``campaign.deliver``; globex: a ``noop``),
    a job of acme's still queued, and an operator."""
    acme, globex = sign_up(client, "acme"), sign_up(client, "globex")
    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="ops@fairq.example", password=PASSWORD)
    ops = login(client, "_platform", "ops@fairq.example")
    a1, a2, g1 = dead("acme"), dead("acme", "campaign.deliver"), dead("globex")
    with tenant_session("acme") as session:
        waiting = Job(tenant_id="acme", kind="noop", state="queued", payload={})
        session.add(waiting)
        session.flush()
        queued = waiting.id
    return SimpleNamespace(acme=acme, globex=globex, ops=ops, a1=a1, a2=a2, g1=g1, queued=queued)


def problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == f"/problems/{slug}"
    return response.get_json()


# -- /admin/dlq ----------------------------------------------------------------------------


def test_operators_list_show_replay_and_purge_dead_jobs(client, story):
    s = story

    def ids(url: str) -> list[int]:
        response = client.get(url, headers=s.ops.headers)
        assert response.status_code == 200, response.get_json()
        return [job["id"] for job in response.get_json()["items"]]

    assert ids("/admin/dlq") == [s.g1, s.a2, s.a1]  # every tenant's, newest first; not the queued job
    assert ids("/admin/dlq?tenant=acme") == [s.a2, s.a1]
    assert ids("/admin/dlq?kind=campaign") == [s.a2]  # a kind takes in its family
    assert ids("/admin/dlq?kind=camp") == []  # ... not any prefix
    assert ids("/admin/dlq?tenant=globex&kind=noop") == [s.g1]
    first = client.get("/admin/dlq?limit=2", headers=s.ops.headers).get_json()
    assert [j["id"] for j in first["items"]] == [s.g1, s.a2] and first["next"] == s.a2
    assert ids(f"/admin/dlq?limit=2&after={first['next']}") == [s.a1]

    shown = client.get(f"/admin/dlq/{s.a1}", headers=s.ops.headers).get_json()
    assert (shown["id"], shown["tenant_id"], shown["kind"], shown["state"], shown["attempts"]) == \
        (s.a1, "acme", "noop", "dead", 3)
    assert "downstream is down" in shown["last_error"]
    problem(client.get(f"/admin/dlq/{s.queued}", headers=s.ops.headers), 404, "not-found")  # not dead
    problem(client.get("/admin/dlq/999999", headers=s.ops.headers), 404, "not-found")

    # no filter at all is refused unless asked for explicitly
    for action in ("replay", "purge"):
        problem(client.post(f"/admin/dlq/{action}", json={}, headers=s.ops.headers), 400, "validation-error")
    assert ids("/admin/dlq") == [s.g1, s.a2, s.a1]

    replayed = client.post("/admin/dlq/replay", json={"tenant": "acme", "kind": "campaign"}, headers=s.ops.headers)
    assert replayed.status_code == 200 and replayed.get_json() == {"job_ids": [s.a2]}
    job = job_row(s.a2)
    assert (job.state, job.attempts, job.finished_at, job.not_before) == ("queued", 0, None, None)
    assert job.payload == {"n": 1}  # the row is all a replay needs

    purged = client.post("/admin/dlq/purge", json={"job_ids": [s.g1]}, headers=s.ops.headers)
    assert purged.get_json() == {"job_ids": [s.g1]} and job_row(s.g1) is None
    everything = client.post("/admin/dlq/purge", json={"all": True}, headers=s.ops.headers)
    assert everything.get_json() == {"job_ids": [s.a1]} and job_row(s.a1) is None
    assert ids("/admin/dlq") == []
    assert job_row(s.a2).state == "queued" and job_row(s.queued).state == "queued"  # live jobs untouched


def test_dead_letters_are_for_operators_only(client, story):
    """Tenants' tokens, the owner's included (an admin and a member), are refused on every
    ``/admin/dlq`` endpoint and change nothing; a tenant sees its own dead job only through
    ``/jobs``, where another tenant gets a 404."""
    s = story
    member = invite(client, s.acme, "member@acme.example")
    tenants = (s.acme, member, s.globex)
    for method, url, body in (
        ("GET", "/admin/dlq", None),
        ("GET", "/admin/dlq?tenant=acme", None),
        ("GET", f"/admin/dlq/{s.a1}", None),
        ("POST", "/admin/dlq/replay", {"job_ids": [s.a1]}),
        ("POST", "/admin/dlq/replay", {"tenant": "acme"}),
        ("POST", "/admin/dlq/purge", {"job_ids": [s.a1]}),
        ("POST", "/admin/dlq/purge", {"all": True}),
    ):
        assert_operator_only(client, method, url, tenants=tenants, json=body)
    assert {job_row(i).state for i in (s.a1, s.a2, s.g1)} == {"dead"}  # nothing replayed or purged

    own = client.get(f"/jobs/{s.a1}", headers=s.acme.headers)
    assert own.status_code == 200 and own.get_json()["state"] == "dead"
    assert_cross_tenant_404(client, "GET", f"/jobs/{s.a1}", other=s.globex)
    assert_cross_tenant_404(client, "POST", f"/jobs/{s.a1}/cancel", other=s.globex)


def test_a_dead_jobs_detail_carries_its_payload_for_operators_only(client, story):
    """``GET /admin/dlq/{id}`` shows what ``fairq dlq show`` does: the payload a replay would run
    and the queue the job died in; the OpenAPI description says so; tenants' tokens (the owner's
    too) are refused without seeing it."""
    s = story
    shown = client.get(f"/admin/dlq/{s.a1}", headers=s.ops.headers)
    assert shown.status_code == 200, shown.get_json()
    assert (shown.get_json()["payload"], shown.get_json()["queue"]) == ({"n": 1}, None)
    printed = json.loads(fairq(client, "dlq", "show", str(s.a1)).output)
    assert all(printed[field] == shown.get_json()[field] for field in ("id", "payload", "queue"))

    spec = client.get("/openapi.json").get_json()
    answer = spec["paths"]["/admin/dlq/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    name = answer["schema"]["$ref"].rsplit("/", 1)[-1]
    assert {"payload", "queue", "last_error"} <= set(spec["components"]["schemas"][name]["properties"])

    member = invite(client, s.acme, "member@acme.example")
    assert_operator_only(client, "GET", f"/admin/dlq/{s.a1}", tenants=(s.acme, member, s.globex))
    refused = client.get(f"/admin/dlq/{s.a1}", headers=s.acme.headers).get_json()
    assert "payload" not in refused and "downstream" not in json.dumps(refused)


def test_replay_routes_by_the_tenants_plan_now_not_the_queue_the_job_died_in(client, story):
    """A tenant that left its dedicated plan may have no worker on ``fairq.t.<tenant>`` any more:
    its replayed job goes to the shared queue; and a tenant that took a dedicated plan since gets
    its replayed job on its own queue. The dispatcher publishes a job to its ``queue``."""
    from app.db import get_db
    from app.scheduling.store import Store

    s = story
    service.create_tenant("initech", plan="dedicated")
    left = dead("initech", queue=dedicated_queue("initech"))
    # Given initech left the dedicated plan and acme took it, after their jobs died
    service.update_tenant("initech", service.TenantChanges(plan="default"))
    service.update_tenant("acme", service.TenantChanges(plan="dedicated"))
    # When both are replayed
    replayed = client.post("/admin/dlq/replay", json={"job_ids": [left, s.a1, s.g1]}, headers=s.ops.headers)
    assert replayed.status_code == 200 and sorted(replayed.get_json()["job_ids"]) == sorted([left, s.a1, s.g1])
    # Then each goes where its tenant's plan sends its jobs now
    assert (job_row(left).queue, job_row(s.a1).queue, job_row(s.g1).queue) == (None, dedicated_queue("acme"), None)
    heads = {h.job_id: h.queue for tenant in ("initech", "acme") for h in Store(get_db()).heads(tenant, 10)}
    assert heads[left] is None and heads[s.a1] == dedicated_queue("acme")


# -- fairq dlq -----------------------------------------------------------------------------


def fairq(client, *args: str, stdin: str | None = None):
    """``fairq ARGS`` in this process (Flask's CLI runner over the app's own commands)."""
    return client.application.test_cli_runner().invoke(args=list(args), input=stdin)


def listed(result) -> list[int]:
    assert result.exit_code == 0, result.output
    return [int(line.split()[0]) for line in result.output.splitlines()]


def test_fairq_dlq_list_show_replay_and_purge_with_filters(client, story):
    s = story
    assert listed(fairq(client, "dlq", "list")) == [s.g1, s.a2, s.a1]
    assert listed(fairq(client, "dlq", "list", "--tenant", "acme")) == [s.a2, s.a1]
    assert listed(fairq(client, "dlq", "list", "--kind", "campaign")) == [s.a2]
    assert listed(fairq(client, "dlq", "list", "--tenant", "globex", "--kind", "noop")) == [s.g1]
    assert listed(fairq(client, "dlq", "list", "--job", str(s.a1), "--job", str(s.g1))) == [s.g1, s.a1]
    assert listed(fairq(client, "dlq", "list", "--limit", "1")) == [s.g1]

    shown = fairq(client, "dlq", "show", str(s.a1))
    assert shown.exit_code == 0, shown.output
    row = json.loads(shown.output)
    assert (row["id"], row["tenant_id"], row["state"], row["payload"]) == (s.a1, "acme", "dead", {"n": 1})

    replayed = fairq(client, "dlq", "replay", "--tenant", "acme", "--kind", "campaign")
    assert replayed.exit_code == 0 and replayed.output.strip() == f"replayed 1 jobs: {s.a2}"
    assert (job_row(s.a2).state, job_row(s.a2).attempts) == ("queued", 0)

    kept = fairq(client, "dlq", "purge", "--tenant", "globex", stdin="n\n")  # asks first
    assert kept.exit_code == 1 and "Aborted" in kept.output and job_row(s.g1).state == "dead"
    purged = fairq(client, "dlq", "purge", "--tenant", "globex", "--yes")
    assert purged.exit_code == 0 and purged.output.strip() == "purged 1 jobs" and job_row(s.g1) is None
    everything = fairq(client, "dlq", "purge", "--all", "--yes")
    assert everything.output.strip() == "purged 1 jobs" and job_row(s.a1) is None
    assert listed(fairq(client, "dlq", "list")) == []
    assert job_row(s.a2).state == "queued" and job_row(s.queued).state == "queued"


@pytest.mark.parametrize(("args", "message"), [
    (("dlq", "show", "999999"), "job 999999 is not in the dead-letter queue"),
    (("dlq", "show", "abc"), "'abc' is not a valid integer"),
    (("dlq", "replay"), "give a tenant, a kind or job ids"),
    (("dlq", "purge", "--yes"), "give a tenant, a kind or job ids"),
    (("dlq", "replay", "--job", "x"), "'x' is not a valid integer"),
    (("dlq", "list", "--limit", "0"), "0 is not in the range"),
    (("dlq", "list", "--nope"), "No such option '--nope'"),
])
def test_fairq_dlq_bad_input_exits_2_with_a_reason_and_changes_nothing(client, story, args, message):
    result = fairq(client, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert {job_row(i).state for i in (story.a1, story.a2, story.g1)} == {"dead"}


def test_fairq_dlq_show_of_a_queued_job_exits_2(client, story):
    result = fairq(client, "dlq", "show", str(story.queued))
    assert result.exit_code == 2 and "not in the dead-letter queue" in result.output


# -- the broker's dead-letter queues ----------------------------------------------------------


def channel_of(broker):
    """A channel on a connection of its own (the broker object's queues stay as they were: a queue
    declared through it would be consumed by every in-process worker started after)."""
    import pika

    from app.scheduling.publisher import connection_parameters

    connection = pika.BlockingConnection(connection_parameters(broker))
    return connection, connection.channel()


def fresh_dead_letter_queues(broker, *queues: str) -> None:
    """The dead-letter queues of ``queues``, there (as Dramatiq declares them) and empty."""
    from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
    from dramatiq.common import xq_name

    connection, channel = channel_of(broker)
    try:
        for queue in queues:
            channel.queue_declare(xq_name(queue), durable=True, arguments={"x-message-ttl": DEAD_MESSAGE_TTL})
            channel.queue_purge(xq_name(queue))
    finally:
        connection.close()


def letters(broker, queue: str) -> list[int]:
    """The job ids of the messages in ``queue``'s dead-letter queue (left in place)."""
    from dramatiq import Message
    from dramatiq.common import xq_name

    connection, channel = channel_of(broker)
    try:
        found = []
        while True:
            method, _, body = channel.basic_get(xq_name(queue))  # not acked: back when we close
            if method is None:
                return sorted(found)
            found.append(Message.decode(body).args[0])
    finally:
        connection.close()


def put_letters(broker, queue: str, job_ids) -> None:
    """Dead letters for these jobs in ``queue``'s dead-letter queue, as Dramatiq leaves them."""
    import pika
    from dramatiq.common import xq_name

    connection, channel = channel_of(broker)
    try:
        for job_id in job_ids:
            message = kinds()["noop"].actor.message(job_id).copy(queue_name=queue)
            channel.basic_publish("", xq_name(queue), message.encode(), pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def test_replay_and_purge_take_dead_letters_out_of_a_dedicated_queues_dlq_too(db, real_settings):
    """A dedicated plan's job dies in ``fairq.t.<tenant>``: its dead letter is in that queue's
    ``.XQ``, not in ``fairq.jobs.XQ``; replay and purge must look there, and keep other letters."""
    from app.tasks import broker

    own = dedicated_queue("acme")
    fresh_dead_letter_queues(broker, own, JOBS_QUEUE)
    service.create_tenant("acme", plan="dedicated")
    d1, d2, shared = dead("acme", queue=own), dead("acme", queue=own), dead("acme")
    stranger = 10**9  # a letter of no job of ours: never dropped
    put_letters(broker, own, [d1, d2, stranger])
    put_letters(broker, JOBS_QUEUE, [shared, stranger])
    try:
        assert dlq.replay(dlq.DeadFilter(job_ids=(d1,)), broker=broker) == [d1]
        assert letters(broker, own) == sorted([d2, stranger])
        assert sorted(dlq.purge(dlq.DeadFilter(tenant_id="acme"), broker=broker)) == sorted([d2, shared])
        assert letters(broker, own) == [stranger]
        assert letters(broker, JOBS_QUEUE) == [stranger]
    finally:
        fresh_dead_letter_queues(broker, own, JOBS_QUEUE)


def test_replay_after_a_plan_change_drops_the_dead_letter_from_the_queue_the_job_died_in(db, real_settings):
    """The job goes to the shared queue now, but its dead letter is in its old dedicated queue's
    ``.XQ``: that is where replay takes it out."""
    from app.tasks import broker

    own = dedicated_queue("acme")
    fresh_dead_letter_queues(broker, own, JOBS_QUEUE)
    service.create_tenant("acme", plan="dedicated")
    job_id = dead("acme", queue=own)
    put_letters(broker, own, [job_id])
    service.update_tenant("acme", service.TenantChanges(plan="default"))
    try:
        assert dlq.replay(dlq.DeadFilter(job_ids=(job_id,)), broker=broker) == [job_id]
        assert job_row(job_id).queue is None and letters(broker, own) == []
    finally:
        fresh_dead_letter_queues(broker, own, JOBS_QUEUE)
