"""Dead-letter metrics: queue depths and the oldest dead letter's age, sampled from
RabbitMQ by the bridge process, plus what the publisher and bridge did.

Defined here, not in `flowlog/observability/metrics.py`, which another area was writing
while this was built (issue 14); they register in the same default prometheus-client
registry, so every /metrics endpoint of the process shows them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

QUEUE_DEPTH = Gauge(
    "flowlog_deadletter_queue_depth",
    "Messages in a dead-letter queue (delay.<ms>, due, parked), sampled by the bridge.",
    ["queue"])
OLDEST_AGE = Gauge(
    "flowlog_deadletter_oldest_age_seconds",
    "Age of the oldest dead letter at the head of a queue (now minus its dead-lettering "
    "time; 0 when the queue is empty), sampled by the bridge.", ["queue"])
PUBLISHED = Counter(
    "flowlog_deadletters_published_total",
    "Dead letters confirmed by RabbitMQ, per stage they went to (delay, parked, due).",
    ["stage"])
RETRIES = Counter(
    "flowlog_deadletter_retries_total",
    "Retry commands written to Kafka from dead letters, per source (ladder, operator).",
    ["source"])
MALFORMED = Counter(
    "flowlog_deadletters_malformed_total",
    "Messages the bridge could not read, moved to the parking queue with the reason.")


async def sample(topo: Any, channel: Any) -> dict[str, tuple[int, float]]:
    """Depth and oldest age of every queue: {label: (depth, age seconds)}.

    Depth from a passive declare; the age from the head message of the delay and parking
    queues (taken and returned unacknowledged). The due queue's head is the bridge's:
    only its depth is read.
    """
    out: dict[str, tuple[int, float]] = {}
    now = time.time()
    for label, queue in topo.queues().items():
        declared = await channel.declare_queue(queue.name, passive=True)
        depth = int(declared.declaration_result.message_count or 0)
        age = 0.0
        if depth and label != "due":
            msg = await declared.get(no_ack=False, fail=False, timeout=5)
            if msg is not None:
                if msg.timestamp is not None:
                    age = max(0.0, now - msg.timestamp.timestamp())
                await msg.nack(requeue=True)
        QUEUE_DEPTH.labels(label).set(depth)
        OLDEST_AGE.labels(label).set(age)
        out[label] = (depth, age)
    return out
