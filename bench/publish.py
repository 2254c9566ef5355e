"""Publishing job messages to RabbitMQ with a guarantee: which way is cheapest?

    python3 bench/publish.py                          # batches of 4, 16 and 100 messages
    python3 bench/publish.py --messages 20000 --batch 8

The dispatcher may count a job ``dispatched`` only once RabbitMQ holds its message. Ways to know:

- ``dramatiq confirm``: Dramatiq's own broker with ``confirm_delivery=True``: one confirm round
  trip per message (the baseline the scheduling issue measured at ~560 messages/s);
- ``tx, flush per message``: a channel in transaction mode, pika's blocking ``basic_publish``
  (which writes the socket and waits for it to drain after every message), one ``tx.commit``
  per batch (fairq's publisher until session 7);
- ``tx, one flush``: the same transaction, the batch's frames written out by the commit
  (fairq's :class:`~app.scheduling.publisher.RabbitmqTxPublisher`);
- ``confirms per batch``: a channel in confirm mode, the batch published, then one wait for
  all its confirms.

Each prints messages/s, this process's CPU per message and RabbitMQ's (the ``beam.smp``
process's CPU over the same time, from ``/proc``: the broker's share of the budget counts as
much as ours on a two-core machine). Persistent messages on a durable queue declared as Dramatiq
declares it, in a vhost of its own on loopback. Nothing fails on timing: it reports.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dramatiq  # noqa: E402
import pika  # noqa: E402
from dramatiq.brokers.rabbitmq import RabbitmqBroker  # noqa: E402

from app.scheduling.publisher import RabbitmqTxPublisher  # noqa: E402
from bench.support import fresh_vhost  # noqa: E402

VHOST = "fairq_bench_publish"
URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
QUEUE = "fairq.jobs"


class FlushPerMessage(RabbitmqTxPublisher):
    """fairq's publisher as it was: pika's blocking publish, which flushes every message."""

    def _send_all(self, channel, messages) -> None:
        for message in messages:
            channel.basic_publish(exchange="", routing_key=message.queue_name, body=message.encode(),
                                  properties=pika.BasicProperties(delivery_mode=2))


class ConfirmPerBatch:
    """A channel in confirm mode: publish the batch, then wait until RabbitMQ confirmed all of it."""

    def __init__(self, broker: RabbitmqBroker) -> None:
        self._connection = pika.BlockingConnection(broker.parameters)
        self._blocking = self._connection.channel()
        self._channel = self._blocking._impl  # pika's blocking channel waits for each confirm
        self._acked = self._published = 0
        self._nacked = False
        self._channel.confirm_delivery(self._on_confirm)
        self._connection.process_data_events(time_limit=0)

    def _on_confirm(self, frame) -> None:
        tag, multiple = frame.method.delivery_tag, frame.method.multiple
        self._nacked |= isinstance(frame.method, pika.spec.Basic.Nack)
        self._acked = tag if multiple else self._acked + 1

    def publish(self, messages) -> None:
        for message in messages:
            self._channel.basic_publish(exchange="", routing_key=message.queue_name, body=message.encode(),
                                        properties=pika.BasicProperties(delivery_mode=2))
        self._published += len(messages)
        # pika's blocking connection has no public wait for callbacks of its underlying channel
        self._connection._flush_output(lambda: self._acked >= self._published)
        if self._nacked:
            raise RuntimeError("RabbitMQ refused a message")

    def close(self) -> None:
        self._connection.close()


class DramatiqConfirm:
    """Dramatiq's broker with confirms: one round trip per message."""

    def __init__(self, broker: RabbitmqBroker) -> None:
        self.broker = broker

    def publish(self, messages) -> None:
        for message in messages:
            self.broker.enqueue(message)

    def close(self) -> None:
        self.broker.close()


def beam_cpu() -> float | None:
    """RabbitMQ's CPU seconds so far (its ``beam.smp`` process), or None if it is not found here."""
    found = subprocess.run(["pgrep", "-x", "beam.smp"], capture_output=True, text=True).stdout.split()
    if not found:
        return None
    fields = Path(f"/proc/{found[0]}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, publisher, broker: RabbitmqBroker, messages: int, batch: int) -> dict:
    actor = broker.actors["noop"]
    batches = [[actor.message(job_id) for job_id in range(start, min(start + batch, messages))]
               for start in range(0, messages, batch)]
    publisher.publish(batches[0])  # connections opened, queue declared: not measured
    purge(broker)
    beam0, cpu0, wall0 = beam_cpu(), time.process_time(), time.perf_counter()
    for chunk in batches:
        publisher.publish(chunk)
    wall, cpu, beam1 = time.perf_counter() - wall0, time.process_time() - cpu0, beam_cpu()
    held = purge(broker)
    assert held == messages, f"{name}: RabbitMQ holds {held} of {messages} messages"
    return {"way": name, "batch": batch, "per_s": messages / wall, "ours_us": cpu / messages * 1e6,
            "rabbit_us": (beam1 - beam0) / messages * 1e6 if beam0 is not None else float("nan")}


def purge(broker: RabbitmqBroker) -> int:
    """Empty the queue; how many messages it held."""
    connection = pika.BlockingConnection(broker.parameters)
    try:
        return connection.channel().queue_purge(QUEUE).method.message_count
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", default="4,16,100", help="batch sizes, comma-separated")
    parser.add_argument("--confirm-messages", type=int, default=2_000,
                        help="messages for the per-message confirm baseline (it is slow)")
    args = parser.parse_args()
    fresh_vhost(VHOST)

    def broker(**options) -> RabbitmqBroker:
        made = RabbitmqBroker(url=URL, **options)
        dramatiq.actor(lambda job_id: None, actor_name="noop", queue_name=QUEUE, broker=made)
        made.declare_queue(QUEUE)
        return made

    rows = []
    for size in (int(b) for b in args.batch.split(",")):
        for name, make in (("tx, flush per message", FlushPerMessage), ("tx, one flush", RabbitmqTxPublisher),
                           ("confirms per batch", ConfirmPerBatch)):
            plain = broker()
            publisher = make(plain)
            rows.append(measure(name, publisher, plain, args.messages, size))
            publisher.close()
            plain.close()
    confirming = broker(confirm_delivery=True)
    rows.append(measure("dramatiq confirm", DramatiqConfirm(confirming), confirming, args.confirm_messages, 1))
    confirming.close()

    print(f"{'way':<24} {'batch':>5} {'messages/s':>11} {'our CPU µs/msg':>15} {'RabbitMQ CPU µs/msg':>20}")
    for row in rows:
        print(f"{row['way']:<24} {row['batch']:>5} {row['per_s']:>11,.0f} {row['ours_us']:>15.1f} "
              f"{row['rabbit_us']:>20.1f}")


if __name__ == "__main__":
    main()
