"""Plain Dramatiq, for the fairness benchmark's baselines: ``dramatiq bench.baseline_actors``.

One actor that sleeps, records when it started into Redis, and nothing else:
no job rows, no dispatcher, no gate. Its queue is chosen by the sender
(one shared queue, or one queue per tenant).
"""
from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker

#: Where the baseline writes its (tenant, sent, started, finished) records.
RECORDS = "bench:baseline"

broker = RabbitmqBroker(url=os.environ["BENCH_BROKER_URL"])
if os.environ.get("FAIRQ_WORKER_CPU_AFFINITY") == "spread":
    # bound to a CPU as fairq's worker is (``fairness.py --pin``): the one middleware taken from fairq
    from app.scheduling.affinity import CpuAffinity

    broker.add_middleware(CpuAffinity("spread"))
dramatiq.set_broker(broker)
_redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@dramatiq.actor(queue_name="bench.shared", max_retries=0)
def sleep_job(tenant: str, sent: float, sleep_ms: float) -> None:
    started = time.time()
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    _redis.rpush(RECORDS, f"{tenant} {sent} {started} {time.time()}")


# One queue per tenant, for the queue-per-tenant baseline: the sender names them in BENCH_QUEUES.
for _queue in filter(None, os.environ.get("BENCH_QUEUES", "").split(",")):
    broker.declare_queue(_queue)
