"""The read side reads committed records only: records of a transaction that was aborted
(a fenced processor's writes) are never projected — not by the read model, not by the
audit store, not by `flowlog history` — while the records of a committed transaction
after it, on the same partition, are."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from flowlog.projections.audit.projector import Runner as AuditRunner
from flowlog.projections.audit.store import AuditStore
from flowlog.projections.live import LivePublisher
from flowlog.projections.runner import ProjectorRunner
from flowlog.projections.worker import make_projector
from flowlog.streams.runtime.tools import collect

from flowlog.settings import Settings
from tests.integration.projections.support import (
    Decisions,
    fetch,
    on_one_partition,
    setup,
    write_transactions,
)

pytestmark = pytest.mark.integration


def _same_partition(settings: Settings) -> tuple[Decisions, Decisions, int]:
    """Two executions whose records land on one partition (the committed one then proves
    the projector went past the aborted one's offsets)."""
    (first, second), p = on_one_partition(settings, 2, "rc", candidates=40)
    return first, second, p


@pytest.fixture
async def read_side(settings: Settings, pg_schema: str) -> AsyncIterator[AuditStore]:
    s = settings.model_copy(update={"pg_schema": pg_schema})
    await asyncio.to_thread(setup, s, pg_schema)
    store = await asyncio.to_thread(AuditStore, s, pg_schema)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(ProjectorRunner(s, make_projector("readmodel", s),
                                                 LivePublisher(s, enabled=False)).run(stop)),
             asyncio.create_task(AuditRunner(s, store).serve(stop))]
    try:
        yield store
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        store.close()


async def test_an_aborted_transaction_is_never_projected(
        settings: Settings, pg_schema: str, read_side: AuditStore) -> None:
    aborted, committed, partition = _same_partition(settings)
    gone, kept = aborted[0][0].execution_id, committed[0][0].execution_id
    await write_transactions(settings, [(aborted, False), (committed, True)], partition,
                             f"{settings.topic_prefix}rc-test")
    n_kept = sum(len(d) for d in committed)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:  # until both projections applied the committed execution's last event
        rows = await fetch(settings, pg_schema,
                           "SELECT count(*) AS n FROM execution_events WHERE execution_id = $1",
                           kept)
        audited = await asyncio.to_thread(read_side.load, kept)
        if rows[0]["n"] == n_kept and audited is not None and audited.version == n_kept:
            break
        assert loop.time() < deadline, (f"committed execution not projected in 60 s: "
                                         f"{rows[0]['n']}/{n_kept} rows, audit {audited}")
        await asyncio.sleep(0.1)

    for table in ("execution_events", "workflow_executions", "node_runs"):
        rows = await fetch(settings, pg_schema,
                           f"SELECT count(*) AS n FROM {table} WHERE execution_id = $1", gone)
        assert rows[0]["n"] == 0, f"{table} holds the aborted execution {gone}"
    rejects = await fetch(settings, pg_schema, "SELECT count(*) AS n FROM projection_rejects")
    assert rejects[0]["n"] == 0
    assert await asyncio.to_thread(read_side.load, gone) is None

    assert await collect(settings, gone) == []  # `flowlog history`
    assert [e["seq"] for e in await collect(settings, kept)] == list(range(1, n_kept + 1))
