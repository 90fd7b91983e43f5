"""The projector's Prometheus series, on the shared objects of `flowlog.observability`:
records behind per group/topic/partition (`flowlog_consumer_lag`, sampled by the process's
lag sampler from the consumer) and seconds behind per projection
(`flowlog_projection_lag_seconds`, set after every commit). The worker process serves
them on /metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flowlog.observability.lag import LAG
from flowlog.observability.metrics import PROJECTION_LAG


def watch(group: str, consumer: Any) -> None:
    LAG.watch(group, consumer)


def observe_lag(projection: str, newest: datetime | None) -> None:
    """The age of the newest event applied, after a commit."""
    if newest is not None:
        PROJECTION_LAG.labels(projection).set(
            max(0.0, (datetime.now(UTC) - newest).total_seconds()))
