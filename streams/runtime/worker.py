"""A worker process: one or more roles sharing a producer and a definitions registry.

`Worker` is the composition root's caller: it builds what the roles share (the producer,
the definitions follower) and each role through `compose.py`, which builds and injects
every consumer, guard, codec, admission and task runner; the roles build none of them.

    await run_worker(settings, ["processor", "executor"])

Roles of `all` (the default layout): `processor` (per execution partition: decisions, the
node tasks that follow from them, timers and admissions in one step; processor.py) and
`executor` (node tasks). Any number of processes of each role may run; partitions spread
among them through their consumer groups.

The classic layout, opt-in: `orchestrator` (decisions) + `dispatcher` (node tasks, due timers
and admissions, derived from execution-events; called `timers` until the previous release,
that name still accepted with a warning) + `executor`. It does what the processor does in
two roles and one more Kafka hop per node; run it instead of the processor, never beside it
on the same topics (docs/engine.md, "Layouts").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from flowlog.streams.runtime import compose
from flowlog.streams.runtime.executor import Runner
from flowlog.streams.runtime.kafka import ensure_topics
from flowlog.streams.runtime.memory import freeze_gc
from flowlog.streams.runtime.registry import RegistryFollower

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)
#: the roles of `all`
ROLES = ("processor", "executor")
#: the classic layout's roles, named explicitly (`orchestrator executor dispatcher`)
OPT_IN = ("orchestrator", "dispatcher")
#: former role names, accepted for one release: old name -> name
ALIASES = {"timers": "dispatcher"}


def expand(roles: Sequence[str]) -> list[str]:
    """The roles named, `all` expanded, former names (`ALIASES`) replaced, each once."""
    out: list[str] = []
    for role in roles:
        if role in ALIASES:
            log.warning("role %r is called %r now; the old name is accepted until the next "
                        "release: use `flowlog worker %s`", role, ALIASES[role], ALIASES[role])
            role = ALIASES[role]
        for r in (ROLES if role == "all" else (role,)):
            if r not in ROLES and r not in OPT_IN:
                raise ValueError(f"unknown role {r!r}: use one of "
                                 f"{', '.join(ROLES + OPT_IN)} or all")
            if r not in out:
                out.append(r)
    both = [r for r in out if r in OPT_IN]
    if "processor" in out and both:
        raise ValueError(f"the processor does the work of {' and '.join(both)}: run "
                         "either `processor executor` (the default, `all`) or `orchestrator "
                         "executor dispatcher`, never both on the same topics")
    return out


class Worker:
    """The roles of one process; `start` returns once every role is consuming."""

    def __init__(self, settings: Settings, roles: Sequence[str],
                 runner_factory: Callable[[Settings], Runner] | None = None) -> None:
        self.settings = settings
        self.roles = expand(roles)
        self.runner_factory = runner_factory  # None: `compose.default_runner`
        self.components: dict[str, Any] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.follower: RegistryFollower | None = None
        self.producer: Any = None
        self.runner: Runner | None = None
        self.shared: compose.Shared | None = None

    async def start(self) -> None:
        await asyncio.to_thread(ensure_topics, self.settings)
        self.producer = compose.producer(self.settings)
        await self.producer.start()
        shared = self.shared = compose.Shared(self.settings, self.producer)
        if {"orchestrator", "dispatcher", "processor"} & set(self.roles):
            self.follower = shared.follower = RegistryFollower(self.settings)
            await self.follower.start()
        for role in self.roles:
            if role == "orchestrator":
                comp: Any = compose.orchestrator(shared)
            elif role == "processor":
                comp = compose.processor(shared)
            elif role == "dispatcher":
                comp = compose.dispatcher(shared)
            else:
                self.runner = (self.runner_factory(self.settings) if self.runner_factory
                               else compose.default_runner(shared))
                hooks.watch_breakers(self.runner)  # flowlog_open_breakers
                comp = compose.executor(shared, self.runner)
            self.components[role] = comp
            self.tasks.append(asyncio.create_task(comp.run(), name=f"role-{role}"))
        # a worker builds most of its lasting objects up front (modules, schemas, clients,
        # definitions): take them out of the cyclic GC's full passes (see memory.py)
        freeze_gc(self.settings)
        log.info("worker: running %s", ", ".join(self.roles))

    async def wait(self) -> None:
        """Until a role stops (an error ends the process: a restart rebuilds from the log)."""
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                log.debug("role stopped", exc_info=True)
        if self.runner is not None:
            await self.runner.aclose()
        if self.follower is not None:
            await self.follower.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.shared is not None:
            await self.shared.close()  # admission (Redis), the secrets resolver


async def run_worker(settings: Settings, roles: Sequence[str]) -> None:
    worker = Worker(settings, roles)
    await worker.start()
    try:
        await worker.wait()
    finally:
        await worker.stop()
