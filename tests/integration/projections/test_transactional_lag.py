"""`flowlog projections status` on a partition written in transactions (the `processor`
role's way): a commit marker takes an offset that no record has, so a projector storing
"last record + 1" showed 1 record of lag at rest. The projectors store the consumer's
position after the fetch (past markers and aborted records): 0 lag at rest, and a record
not yet projected still shows as 1.

Both ways the position moves are covered: a batch that drained the marker with its records
(200 records per batch), and a marker fetched after the last record, by a poll that returns
nothing (1 record per batch: the runner stores the position on its own)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from flowlog.projections import kafka as pk
from flowlog.projections.live import LivePublisher
from flowlog.projections.ops import PartitionStatus, status
from flowlog.projections.runner import ProjectorRunner
from flowlog.projections.worker import make_projector

from flowlog.settings import Settings
from tests.integration.projections.support import (
    fetch,
    on_one_partition,
    send_decisions,
    setup,
    write_transactions,
)

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _running(s: Settings) -> AsyncIterator[list[ProjectorRunner]]:
    runners = [ProjectorRunner(s, make_projector(n, s), LivePublisher(s, enabled=False))
               for n in ("readmodel", "analytics")]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:
        yield runners
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)


def _lags(rows: list[PartitionStatus]) -> dict[tuple[str, str, int], int]:
    return {(r.projector, r.topic, r.partition): r.lag for r in rows}


@pytest.mark.parametrize("batch_records", [200, 1])
async def test_status_shows_no_lag_at_rest_after_transactions(
        settings: Settings, pg_schema: str, kafka_bootstrap: str, batch_records: int) -> None:
    s = settings.model_copy(update={"default_partitions": 3, "pg_schema": pg_schema,
                                    "projector_batch_records": batch_records})
    await asyncio.to_thread(setup, s, pg_schema)
    (first, aborted, second, plain), partition = on_one_partition(s, 4, "txlag", candidates=80)
    # committed, aborted, committed: markers after each, aborted records in between
    last = await write_transactions(s, [(first, True), (aborted, False), (second, True)],
                                    partition, f"{s.topic_prefix}txlag")
    kept = {d[0][0].execution_id for d in (first, second)}
    n_events = sum(len(e) for d in (first, second) for e in d)
    topic = pk.topic_name(s, "execution-events")

    loop = asyncio.get_running_loop()
    async with _running(s) as runners:
        deadline = loop.time() + 60
        while True:  # until every projector is at every partition's end (status lag 0)
            lags = _lags(await status(s, pg_schema))
            if not any(lags.values()):
                break
            assert loop.time() < deadline, f"still behind at rest after 60 s: {lags}"
            await asyncio.sleep(0.2)
        if batch_records == 1:  # the marker came by a poll with no record
            assert all(r.stats["advanced"] >= 1 for r in runners), [r.stats for r in runners]

    rows = await fetch(s, pg_schema, "SELECT execution_id, count(*) AS n FROM execution_events "
                                     "GROUP BY execution_id")
    assert {r["execution_id"] for r in rows} == kept  # the aborted one was not projected
    assert sum(r["n"] for r in rows) == n_events
    at_rest = [r for r in await status(s, pg_schema) if r.topic == topic
               and r.partition == partition]
    # stored = end = past the commit marker that follows the last record ("last + 1" is not)
    assert len(at_rest) == 2 and all(r.stored == r.end == last + 2 for r in at_rest), at_rest

    # one more record, plain (no transaction), not projected: 1 record of lag, only there
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers)
    await producer.start()
    try:
        await send_decisions(producer, s, plain[:1], partition)
    finally:
        await producer.stop()
    lags = _lags(await status(s, pg_schema))
    behind = {k: v for k, v in lags.items() if v}
    assert behind == {("readmodel", topic, partition): 1, ("analytics", topic, partition): 1}
