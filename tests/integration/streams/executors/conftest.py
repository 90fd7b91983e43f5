"""Executor integration tests: real local HTTP servers (tests/support) and the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from flowlog.streams.executors import TaskRunner
from flowlog.streams.executors.tools import ToolRegistry

from flowlog.settings import Settings
from tests.support.fake_llm import FakeLLMServer
from tests.support.fixtures import *  # noqa: F403  (fake_llm, fake_webhook and their servers)


@pytest.fixture
def exec_settings(
    settings: Settings, fake_llm_server: FakeLLMServer, tmp_path: object
) -> Settings:
    """This test's settings: own topic prefix (own rate-limit keys), the fake LLM, an empty
    secrets folder, and a breaker that opens after 3 failures (this process's own breakers:
    the tests move their clock; the shared store has its own suite)."""
    return settings.model_copy(update={
        "openai_base_url": fake_llm_server.openai_base_url,
        "anthropic_base_url": fake_llm_server.anthropic_base_url,
        "secrets_dir": tmp_path,
        "breaker_failure_threshold": 3,
        "breaker_cooldown_s": 30.0,
        "executor_rate_limiter": "local",
        "breaker_store": "local",
    })  # fmt: skip


@pytest.fixture
def tools() -> ToolRegistry:
    return ToolRegistry()


@pytest.fixture
async def runner(exec_settings: Settings, tools: ToolRegistry) -> AsyncIterator[TaskRunner]:
    r = TaskRunner(exec_settings, tools=tools)
    yield r
    await r.aclose()
