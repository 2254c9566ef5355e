"""Time limits against RabbitMQ's consumer ack timeout: a message must be acknowledged in time.

Dramatiq acknowledges a message after running it, and a worker process prefetches twice its threads
per queue: a message can wait in its buffer behind rounds of the longest time limit before its own
run. Past the ack timeout RabbitMQ closes the channel and delivers the messages again.
"""
import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

import app.tasks  # noqa: F401  (every actor fairq declares)
from app.scheduling.acks import AckDeadline, AckDeadlineError, budget, longest_wait
from app.scheduling.kinds import job_kind, kinds


def test_a_message_waits_behind_rounds_of_the_longest_limit_as_dramatiq_prefetches():
    # 8 threads, Dramatiq's default prefetch of 16 on each of fairq's 2 queues: 31 messages can be
    # ahead of one, 8 running: it starts within 3 rounds of the longest limit, then runs its own
    assert longest_wait(longest=100, threads=8, prefetch=16, queues=2) == 400
    assert longest_wait(longest=100, threads=8, prefetch=16, queues=1) == 200  # a `-Q` worker
    assert longest_wait(longest=100, threads=8, prefetch=1, queues=2) == 100  # dramatiq_queue_prefetch=1
    assert longest_wait(longest=100, threads=1, prefetch=2, queues=2) == 400
    assert budget(1800) == pytest.approx(1620)


def test_fairqs_own_actors_fit_the_default_ack_timeout_with_dramatiqs_default_prefetch(settings):
    """ingest, reconcile and campaign.run had 1,500 s: a message could stay unacknowledged ~6,000 s."""
    from app.tasks import broker

    assert settings.broker_ack_timeout_seconds == 1800
    for threads in (1, 2, 8, 64):
        worker = dramatiq.Worker(broker, worker_threads=threads)  # not started: its prefetch, as Dramatiq sets it
        assert worker.queue_prefetch == 2 * threads
        AckDeadline().before_worker_boot(broker, worker)  # does not raise
    longest = max(actor.options["time_limit"] for actor in broker.actors.values()) / 1000
    assert longest_wait(longest=longest, threads=8, prefetch=16, queues=2) <= budget(1800)


def test_a_job_kind_whose_own_limit_is_over_the_budget_is_refused_when_declared():
    with pytest.raises(ValueError, match="FAIRQ_BROKER_ACK_TIMEOUT_SECONDS"):
        job_kind("test.too_long", time_limit=1700)(lambda job: None)
    assert "test.too_long" not in kinds()


@pytest.fixture
def rabbit(settings):
    """A RabbitMQ broker of the test's own (nothing connects before a consumer or a message)."""
    broker = RabbitmqBroker(url=settings.broker_url)
    broker.add_middleware(AckDeadline())
    yield broker
    broker.close()


def test_a_worker_whose_messages_could_outlast_the_ack_timeout_refuses_to_start(rabbit):
    """Only a MiddlewareError stops a worker's boot (Dramatiq logs and swallows any other exception)."""
    dramatiq.actor(lambda: None, actor_name="long", queue_name="q1", broker=rabbit, time_limit=500_000)
    dramatiq.actor(lambda: None, actor_name="short", queue_name="q2", broker=rabbit, time_limit=10_000)
    worker = dramatiq.Worker(rabbit, worker_threads=4)  # 16 messages prefetched, 4 running: 3 rounds + its own
    with pytest.raises(AckDeadlineError, match=r"2000 s, over 1620 s .* 500 s \(long\)"):
        worker.start()
    assert not worker.workers and not worker.consumers  # nothing started


def test_the_rule_follows_the_prefetch_the_queues_and_the_configured_ack_timeout(rabbit):
    from app.settings import Settings, use_settings

    dramatiq.actor(lambda: None, actor_name="long", queue_name="q1", broker=rabbit, time_limit=900_000)
    dramatiq.actor(lambda: None, actor_name="short", queue_name="q2", broker=rabbit, time_limit=10_000)
    check = AckDeadline().before_worker_boot
    one_by_one = dramatiq.Worker(rabbit, worker_threads=4)
    one_by_one.queue_prefetch = 1  # dramatiq_queue_prefetch=1: no message waits behind a running one
    check(rabbit, one_by_one)  # 900 s
    only_q1 = dramatiq.Worker(rabbit, worker_threads=4, queues={"q1"})  # 7 ahead at most: one round
    with pytest.raises(AckDeadlineError, match="1800 s, over 1620 s"):
        check(rabbit, only_q1)
    use_settings(Settings.load(broker_ack_timeout_seconds=3600))  # raised on the server too
    try:
        check(rabbit, only_q1)  # 1800 s <= 3240 s
        with pytest.raises(AckDeadlineError, match="3600 s, over 3240 s"):
            check(rabbit, dramatiq.Worker(rabbit, worker_threads=4))  # both queues: three rounds
    finally:
        use_settings(None)


def test_the_in_process_broker_has_no_ack_timeout():
    from dramatiq.brokers.stub import StubBroker

    stub = StubBroker()
    dramatiq.actor(lambda: None, actor_name="long", broker=stub, time_limit=10_000_000)
    AckDeadline().before_worker_boot(stub, dramatiq.Worker(stub, worker_threads=1))
