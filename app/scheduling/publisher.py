"""Publishing a batch of job messages, all confirmed by the broker or none counted.

Dramatiq's RabbitMQ broker publishes one message per confirm round trip (with
``confirm_delivery=True``): about 560 messages/s here. The dispatcher sends
whole batches instead, on a channel of its own in transaction mode: publish
the batch, then one ``tx.commit`` — when it returns, RabbitMQ holds every
message (persistent, on durable queues). ``bench/publish.py`` measures this
against per-message confirms.

On the embedded default the broker is Dramatiq's in-process StubBroker, which
takes messages one at a time: a batch that fails part-way raises
:class:`PublishError` saying how many went out, so that only the rest are taken back.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import dramatiq
import pika
from dramatiq.broker import Broker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker

__all__ = ["Publisher", "PublishError", "make_publisher", "connection_parameters"]

logger = logging.getLogger(__name__)


def connection_parameters(broker: RabbitmqBroker):
    """The broker's pika connection parameters (its first, if it has several)."""
    parameters = broker.parameters
    return parameters[0] if isinstance(parameters, list) else parameters


class PublishError(Exception):
    """A batch failed part-way: its first ``sent`` messages are in the broker, the rest are not."""

    def __init__(self, sent: int) -> None:
        super().__init__(f"publishing failed after {sent} messages")
        self.sent = sent


class Publisher:
    """Publishes through the broker itself (the in-process StubBroker), one message at a time."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._rerouted: set[str] = set()

    @property
    def durable(self) -> bool:
        """Whether the messages sent outlive this process. The in-process broker's do not: when the
        process ends they are gone, and their jobs must be dispatched again (see ``Store.lost``)."""
        return not isinstance(self.broker, StubBroker)

    def publish(self, messages: Sequence[dramatiq.Message]) -> None:
        """Send every message, in order.

        A message for a queue this broker has not declared — a tenant's dedicated queue, which
        needs RabbitMQ and workers started with ``-Q`` for it — goes to its actor's own queue, the
        one this process's worker consumes (logged once per queue).

        Raises:
          PublishError: a message could not be sent (the ones before it were; ``__cause__`` says why).
        """
        for sent, message in enumerate(messages):
            try:
                self.broker.enqueue(self._routed(message))
            except Exception as exc:
                raise PublishError(sent) from exc

    def _routed(self, message: dramatiq.Message) -> dramatiq.Message:
        if message.queue_name in self.broker.get_declared_queues():
            return message
        home = self.broker.get_actor(message.actor_name).queue_name
        if message.queue_name not in self._rerouted:
            self._rerouted.add(message.queue_name)
            logger.warning("queue %s is a dedicated queue, which needs RabbitMQ (workers started with -Q "
                           "for it); on the in-process broker its jobs run on %s", message.queue_name, home)
        return message.copy(queue_name=home)

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
