"""The dispatcher's publisher on RabbitMQ: a batch counts as sent only once the broker holds it."""
import uuid

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from app.scheduling.publisher import RabbitmqTxPublisher, connection_parameters


@pytest.fixture
def rabbit(real_settings):
    """Dramatiq's RabbitMQ broker on the test server, and a queue name of the test's own."""
    broker = RabbitmqBroker(url=real_settings.broker_url)
    queue = f"fairq.test.publish.{uuid.uuid4().hex[:8]}"
    yield broker, queue
    connection = pika.BlockingConnection(connection_parameters(broker))
    try:
        channel = connection.channel()
        for name in (queue, dq_name(queue), xq_name(queue)):
            channel.queue_delete(name)
    finally:
        connection.close()
    broker.close()


def messages(queue: str, ids) -> list[dramatiq.Message]:
    return [dramatiq.Message(queue_name=queue, actor_name="fairq_job_noop", args=(i,), kwargs={}, options={})
            for i in ids]


def held(broker, queue: str) -> list[tuple[int, int]]:
    """What the queue holds: (job id, delivery mode) of each message, taken out of it."""
    connection = pika.BlockingConnection(connection_parameters(broker))
    try:
        channel = connection.channel()
        found = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append((dramatiq.Message.decode(body).args[0], properties.delivery_mode))
    finally:
        connection.close()


def test_a_batch_is_in_rabbitmq_persistent_and_in_order_when_publish_returns(rabbit):
    broker, queue = rabbit
    publisher = RabbitmqTxPublisher(broker)
    try:
        publisher.publish(messages(queue, range(1, 51)))
        # no wait: once publish returns the broker has every message (the dispatcher then marks
        # the jobs dispatched), persistent on a durable queue
        assert held(broker, queue) == [(i, 2) for i in range(1, 51)]
    finally:
        publisher.close()


def test_a_batch_after_the_connection_broke_goes_out_on_a_new_one(rabbit):
    broker, queue = rabbit
    publisher = RabbitmqTxPublisher(broker)
    try:
        publisher.publish(messages(queue, [1]))
        publisher._connection.close()  # RabbitMQ restarted, a heartbeat was missed, ...
        publisher.publish(messages(queue, [2, 3]))
        assert [job_id for job_id, _ in held(broker, queue)] == [1, 2, 3]
    finally:
        publisher.close()

