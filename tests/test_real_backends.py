"""The real column: PostgreSQL, RabbitMQ, Redis and S3 (a local S3 server through boto3)."""
import io
import time

import dramatiq
import pendulum
import pytest
import redis
import sqlalchemy as sa

from app.scheduling.periodic import PeriodicRun
from app.settings import Settings
from app.storage import ObjectNotFound, S3Store, make_store
from tests.conftest import free_port, fresh_flush


def test_the_test_process_uses_the_real_servers(real_settings):
    assert real_settings.embedded == {"database": False, "broker": False, "redis": False, "storage": False}


def test_an_actor_round_trip_through_rabbitmq_writes_a_postgresql_row(real_settings, db):
    from app.scheduling.housekeeping import purge_periodic_runs
    from app.tasks import broker

    # Given a worker consuming from RabbitMQ
    fresh_flush(broker)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        # When a periodic tick of the housekeeping actor is published
        tick = pendulum.now("UTC").replace(second=0, microsecond=0)
        purge_periodic_runs.send_with_options(scheduled_at=str(tick))
        # Then the worker claims the tick in PostgreSQL and records that it succeeded
        deadline = time.monotonic() + 30
        outcome = None
        while time.monotonic() < deadline and outcome != "succeeded":
            with db.session() as session:
                outcome = session.scalar(sa.select(PeriodicRun.outcome))
            time.sleep(0.1)
    finally:
        worker.stop()
    assert db.dialect == "postgresql"
    assert outcome == "succeeded"


def test_redis_answers(real_settings):
    client = redis.Redis.from_url(real_settings.redis_url)
    assert client.ping() is True
    client.close()


def test_s3_put_and_get_through_boto3(real_settings):
    store = make_store(real_settings)
    assert isinstance(store, S3Store)
    payload = b"txn_id,amount\n1,10.00\n" * 1000
    assert store.put("tenants/t1/uploads/a.csv", io.BytesIO(payload)) == len(payload)
    assert store.exists("tenants/t1/uploads/a.csv")
    assert store.open("tenants/t1/uploads/a.csv").read() == payload
    with pytest.raises(ObjectNotFound):
        store.open("tenants/t1/uploads/missing.csv")
    store.delete("tenants/t1/uploads/a.csv")
    assert not store.exists("tenants/t1/uploads/a.csv")


def test_readyz_names_every_real_component(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    components = {c["component"] for c in response.get_json()["checks"]}
    assert components == {"PostgreSQL", "RabbitMQ", "Redis", "S3"}


def test_readyz_is_503_naming_rabbitmq_when_the_broker_port_is_closed(real_settings):
    from app import create_app

    closed = free_port()
    broken = Settings.load(**{**real_settings.model_dump(), "broker_url": f"amqp://guest:guest@127.0.0.1:{closed}/%2F"})
    response = create_app(broken).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "/problems/backend-unavailable"
    assert "RabbitMQ" in body["detail"]
    down = [c for c in body["checks"] if not c["ok"]]
    assert [c["backend"] for c in down] == ["broker"]


def test_readyz_is_503_naming_redis_and_postgresql_when_they_are_down(real_settings):
    from app import create_app

    broken = Settings.load(**{
        **real_settings.model_dump(),
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/nope",
    })
    body = create_app(broken).test_client().get("/readyz").get_json()
    assert "Redis" in body["detail"] and "PostgreSQL" in body["detail"]
