"""Every example workflow, the engine paths and flow control, run by the layouts other than
the default one.

The test functions are those of test_examples.py, test_engine_paths.py and
test_flow_control.py, imported here. There they run on the default layout (`worker all`:
`processor` + `executor`, `FLOWLOG_PROCESSING_GUARANTEE=at_least_once`); this module's
`make_engine` (which the harness's `engine` fixture uses) runs every case again on
* the processor with `exactly_once` (one transaction per step, fenced), and
* the classic layout, `orchestrator` + `executor` + `dispatcher` (opt-in).
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
#: layout id -> (roles, settings changed)
LAYOUTS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "processor-exactly-once": (["processor", "executor"],
                               {"processing_guarantee": "exactly_once"}),
    "classic": (["orchestrator", "executor", "dispatcher"], {}),
}


@pytest.fixture(params=list(LAYOUTS))
async def make_engine(engine_settings: Settings, request: pytest.FixtureRequest) -> Any:
    roles, changes = LAYOUTS[request.param]
    started: list[Worker] = []

    async def make(runner_factory: Any = None, **overrides: Any) -> Engine:
        s = engine_settings.model_copy(update={**changes, **overrides})
        worker = Worker(s, roles, runner_factory=runner_factory)
        await worker.start()
        assert set(worker.components) == set(roles)
        started.append(worker)
        return Engine(s, worker)

    yield make
    for worker in started:
        await worker.stop()
