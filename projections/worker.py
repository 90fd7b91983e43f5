"""`flowlog worker projector`: the projectors of `FLOWLOG_PROJECTORS` in one process, each
a member of its own consumer group (run any number of processes: they share the
partitions), plus the analytics rollup job."""

from __future__ import annotations

import asyncio
import logging

from flowlog.projections.runner import Projector, ProjectorRunner

from flowlog.settings import Settings

log = logging.getLogger(__name__)


def make_projector(name: str, settings: Settings, schema: str | None = None) -> Projector:
    """A projector by name (readmodel, analytics)."""
    if name == "readmodel":
        from flowlog.projections.readmodel import ReadModelProjector

        return ReadModelProjector(settings, schema)
    if name == "analytics":
        from flowlog.projections.analytics import AnalyticsProjector

        return AnalyticsProjector(settings, schema)
    raise ValueError(f"unknown projector {name!r}: use readmodel or analytics")


PROJECTOR_NAMES = ("readmodel", "analytics")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (the `flowlog worker projector` entry point)."""
    from flowlog.projections.live import LivePublisher

    runners = [ProjectorRunner(settings, make_projector(n, settings),
                               LivePublisher(settings, enabled=settings.projector_live_status
                                             and n == "readmodel"))
               for n in settings.projectors]
    tasks = [asyncio.create_task(r.run(stop), name=f"projector-{r.projector.name}")
             for r in runners]
    if "analytics" in settings.projectors:
        from flowlog.projections.analytics import rollup_loop

        tasks.append(asyncio.create_task(rollup_loop(settings, stop), name="rollups"))
    log.info("projectors running: %s", ", ".join(settings.projectors))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
