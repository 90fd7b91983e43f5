from __future__ import annotations

from collections.abc import Iterator

import pytest
from flowlog.schemas.topics import TopicCatalog, apply_topics

from flowlog.settings import Settings
from tests.support.kafka_topics import delete_prefixed


@pytest.fixture
def catalog(kafka_bootstrap: str, settings: Settings) -> Iterator[TopicCatalog]:
    """This test's own topics (unique prefix), created, and deleted afterwards."""
    cat = TopicCatalog.from_settings(settings)
    apply_topics(cat, kafka_bootstrap)
    yield cat
    delete_prefixed(kafka_bootstrap, settings.topic_prefix)


@pytest.fixture
def cleanup_topics(kafka_bootstrap: str, settings: Settings) -> Iterator[None]:
    yield
    delete_prefixed(kafka_bootstrap, settings.topic_prefix)
