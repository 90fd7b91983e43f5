"""Pytest fixtures for the fake servers; import them into a conftest.py:

    from tests.support.fixtures import fake_llm, fake_webhook  # noqa: F401

One server of each kind per test session; the function-scoped fixture resets it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_llm import FakeLLMServer
from tests.support.fake_webhook import FakeWebhookServer


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


@pytest.fixture(scope="session")
def fake_webhook_server() -> Iterator[FakeWebhookServer]:
    with FakeWebhookServer() as server:
        yield server


@pytest.fixture
def fake_webhook(fake_webhook_server: FakeWebhookServer) -> Iterator[FakeWebhookServer]:
    fake_webhook_server.reset()
    yield fake_webhook_server
    fake_webhook_server.reset()
