"""Processes `flowlog worker NAME` runs besides the engine roles (orchestrator, executor,
timers): the read side, ingress, dead letters.

Each entry maps a name to ``"module:function"``; the function is
``async def run(settings: Settings, stop: asyncio.Event) -> None``: it starts, serves until
``stop`` is set, then shuts down cleanly (and raises if it cannot go on). Modules are
imported only when their process is asked for, so one area's imports cost nothing to the
others. Add a line here when an area adds a process.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any

from flowlog.settings import Settings

ProcessMain = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]

PROCESSES: dict[str, str] = {
    "webhooks": "flowlog.api.webhooks.service:run",  # ingress
    "scheduler": "flowlog.streams.triggers.scheduler:run",  # ingress
    "gateway": "flowlog.api.gateway.service:run",  # ingress
    "events": "flowlog.streams.triggers.events:run",  # ingress
    "poller": "flowlog.streams.triggers.poller:run",  # ingress
    "deadletters": "flowlog.streams.deadletters.bridge:run",
    "projector": "flowlog.projections.worker:run",
    "audit": "flowlog.projections.audit.projector:run",
    "api": "flowlog.api.query.service:run",  # query API + dashboard
    "search-attributes": "flowlog.projections.search_attributes_worker:run",  # query API
}


def load(name: str) -> ProcessMain:
    """The entry function of process ``name`` (KeyError when there is none)."""
    module, _, func = PROCESSES[name].partition(":")
    main: ProcessMain = getattr(importlib.import_module(module), func)
    return main
