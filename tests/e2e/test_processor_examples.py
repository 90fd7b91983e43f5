"""Every example workflow, the engine paths and flow control, run by `worker processor
executor` (the processor in place of the orchestrator and timers roles).

The test functions are those of test_examples.py, test_engine_paths.py and
test_flow_control.py, imported here; this module's `make_engine` (which the harness's
`engine` fixture uses) starts the roles `processor` and `executor` instead of `all`, once
per processing guarantee (`exactly_once`, `at_least_once`): every case runs in both.
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
#: every case runs under both processing guarantees (FLOWLOG_PROCESSING_GUARANTEE)
GUARANTEES = ["exactly_once", "at_least_once"]


@pytest.fixture(params=GUARANTEES)
async def make_engine(engine_settings: Settings, request: pytest.FixtureRequest) -> Any:
    started: list[Worker] = []

    async def make(runner_factory: Any = None, **overrides: Any) -> Engine:
        s = engine_settings.model_copy(
            update={"processing_guarantee": request.param, **overrides})
        worker = Worker(s, ROLES, runner_factory=runner_factory)
        await worker.start()
        assert set(worker.components) == {"processor", "executor"}
        started.append(worker)
        return Engine(s, worker)

    yield make
    for worker in started:
        await worker.stop()
