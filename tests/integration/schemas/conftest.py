from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowlog.schemas.topics import TopicCatalog, apply_topics

from flowlog.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from kafka_helpers import delete_prefixed


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
