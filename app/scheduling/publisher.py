"""Publishing a batch of job messages, all confirmed by the broker or none counted.

Dramatiq's RabbitMQ broker publishes one message per confirm round trip (with
``confirm_delivery=True``): about 560 messages/s here. The dispatcher sends
whole batches instead, on a channel of its own in transaction mode: publish
the batch, then one ``tx.commit`` — when it returns, RabbitMQ holds every
message (persistent, on durable queues). ``bench/publish.py`` measures this
against per-message confirms.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import dramatiq
import pika
from dramatiq.broker import Broker
from dramatiq.brokers.rabbitmq import RabbitmqBroker

__all__ = ["Publisher", "make_publisher", "connection_parameters"]

logger = logging.getLogger(__name__)


def connection_parameters(broker: RabbitmqBroker):
    """The broker's pika connection parameters (its first, if it has several)."""
    parameters = broker.parameters
    return parameters[0] if isinstance(parameters, list) else parameters


class Publisher:
    """Publishes through the broker itself (the in-process StubBroker)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def publish(self, messages: Sequence[dramatiq.Message]) -> None:
        """Send every message; raises if any could not be sent."""
        for message in messages:
            self.broker.enqueue(message)

    def close(self) -> None:
        pass


class RabbitmqTxPublisher(Publisher):
    """Publishes a batch in one AMQP transaction on a dedicated connection.

    Used from one thread only (pika's connections are not thread-safe): the dispatcher's
    publishing thread, as ``pipelined`` asks.
    """

    #: the dispatcher hands batches to a thread of its own rather than waiting for each commit
    pipelined = True

    def __init__(self, broker: RabbitmqBroker) -> None:
        super().__init__(broker)
        self._connection = None
        self._channel = None
        self._declared: set[str] = set()

    def _open(self):
        if self._channel is None or self._channel.is_closed:
            self.close()
            self._connection = pika.BlockingConnection(connection_parameters(self.broker))
            self._channel = self._connection.channel()
            self._channel.tx_select()
        return self._channel

    def publish(self, messages: Sequence[dramatiq.Message]) -> None:
        if not messages:
            return
        try:
            channel = self._open()
            for queue in {m.queue_name for m in messages} - self._declared:
                self._declare(channel, queue)
                self._declared.add(queue)
            self._send_all(channel, messages)
            channel.tx_commit()
        except Exception:
            self.close()  # the next batch starts on a fresh channel
            raise

    def _send_all(self, channel, messages: Sequence[dramatiq.Message]) -> None:
        """Put every message in the connection's output buffer; ``tx_commit`` writes them out.

        Through pika's underlying channel: the blocking channel's ``basic_publish`` writes the
        socket and waits for it to drain after each message, 60 µs of CPU a message here against
        17-23 for the buffered frames (``bench/publish.py``), and the dispatcher's publishing
        thread competes for the interpreter with the companion's dispatching.
        """
        persistent = pika.BasicProperties(delivery_mode=2)
        for message in messages:
            channel._impl.basic_publish(exchange="", routing_key=message.queue_name, body=message.encode(),
                                        properties=persistent)

    def _declare(self, channel, queue: str) -> None:
        """Declare ``queue`` as Dramatiq would (with its delay and dead-letter queues).

        On this channel, not through the broker: declaring through the broker
        would make this process's own worker consume the queue, and a tenant's
        dedicated queue is for the workers started with ``-Q`` for it alone.
        """
        from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
        from dramatiq.common import dq_name, xq_name

        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue)}
        if self.broker.max_priority:
            arguments["x-max-priority"] = self.broker.max_priority
        channel.queue_declare(queue=queue, durable=True, arguments=arguments)
        channel.queue_declare(queue=dq_name(queue), durable=True, arguments=arguments)
        channel.queue_declare(queue=xq_name(queue), durable=True, arguments={"x-message-ttl": DEAD_MESSAGE_TTL})

    def close(self) -> None:
        self._declared.clear()
        try:
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
        except Exception:  # closing a broken connection can fail in many ways; it is gone either way
            logger.debug("closing the publisher's connection failed", exc_info=True)
        self._connection = self._channel = None


def make_publisher(broker: Broker) -> Publisher:
    """The publisher for ``broker``."""
    if isinstance(broker, RabbitmqBroker):
        return RabbitmqTxPublisher(broker)
    return Publisher(broker)
