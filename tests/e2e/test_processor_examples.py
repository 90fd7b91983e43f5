"""Every example workflow, the engine paths and flow control, run by `worker processor
executor` (the processor in place of the orchestrator and timers roles).

The test functions are those of test_examples.py, test_engine_paths.py and
test_flow_control.py, imported here; this module's `make_engine` (which the harness's
`engine` fixture uses) starts the roles `processor` and `executor` instead of `all`.
"""

from __future__ import annotations

from typing import Any

import pytest
from flowlog.streams.runtime.worker import Worker

from flowlog.settings import Settings
from tests.e2e.conftest import Engine
from tests.e2e.test_engine_paths import *  # noqa: F403
from tests.e2e.test_examples import *  # noqa: F403
from tests.e2e.test_flow_control import *  # noqa: F403

pytestmark = pytest.mark.e2e
ROLES = ["processor", "executor"]


@pytest.fixture
async def make_engine(engine_settings: Settings) -> Any:
    started: list[Worker] = []

    async def make(runner_factory: Any = None, **overrides: Any) -> Engine:
        s = engine_settings.model_copy(update=overrides) if overrides else engine_settings
        worker = Worker(s, ROLES, runner_factory=runner_factory)
        await worker.start()
        assert set(worker.components) == {"processor", "executor"}
        started.append(worker)
        return Engine(s, worker)

    yield make
    for worker in started:
        await worker.stop()
