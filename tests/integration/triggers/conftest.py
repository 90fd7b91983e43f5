"""Scheduler test helpers: a migrated schema, topics, an injected clock."""

from __future__ import annotations

from datetime import datetime

import pytest
from flowlog.streams.runtime.kafka import ensure_topics

from flowlog.settings import Settings
from tests.integration.ingress.conftest import migrate


class Clock:
    """The time the schedulers see; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sched_settings(settings: Settings, pg_schema: str, redis_url: str,
                   kafka_bootstrap: str) -> Settings:
    migrate(settings, pg_schema)
    s = settings.model_copy(update={"pg_schema": pg_schema, "default_partitions": 3})
    ensure_topics(s)
    return s
