"""Exactly once in effect across failures: `kill -9` of a projector process in the middle
of its transactions, and a PostgreSQL restart while a projector's transaction is open.
After each, the tables equal a fresh fold of the log and the additive columns (tokens,
retries, node runs) are not doubled.

"Mid-batch" is observed, not hoped for: the kill and the restart happen when
pg_stat_activity shows the projector's connection inside a transaction.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from flowlog.infra.services.postgres import Postgres
from flowlog.projections.ops import verify

from flowlog.settings import Settings
from tests.integration.projections.support import (
    Log,
    executions,
    fetch,
    setup,
    wait_caught_up,
)
from tests.integration.projections.test_projector import running

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fault_settings(settings: Settings, pg_schema: str, kafka_bootstrap: str,
                   redis_url: str) -> Settings:
    s = settings.model_copy(update={"default_partitions": 3, "pg_schema": pg_schema,
                                    "projector_batch_records": 100})
    setup(s, pg_schema)
    return s


async def _in_transaction(s: Settings, app_prefix: str, within: float = 60.0) -> str:
    """Wait until a connection whose application_name starts with ``app_prefix`` is inside
    a batch's transaction (not setting up its session); returns its state and query."""
    conn = await asyncpg.connect(s.pg_dsn)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while True:
            row = await conn.fetchrow(
                "SELECT state, query FROM pg_stat_activity WHERE application_name LIKE $1 "
                "AND xact_start IS NOT NULL AND state IN ('active', 'idle in transaction') "
                "AND query NOT LIKE 'CREATE TEMP%' AND query NOT LIKE '%WHERE projector = $1'",
                app_prefix + "%")
            if row is not None:
                return f"{row['state']}: {row['query'][:60]}"
            assert loop.time() < deadline, f"no transaction of {app_prefix} seen"
    finally:
        await conn.close()


async def _sums(s: Settings) -> tuple[object, ...]:
    r = (await fetch(s, s.pg_schema,
                     "SELECT (SELECT sum(input_tokens) FROM workflow_executions) AS t, "
                     "(SELECT sum(retries) FROM workflow_executions) AS r, "
                     "(SELECT count(*) FROM node_runs) AS n, "
                     "(SELECT count(*) FROM execution_events) AS e, "
                     "(SELECT sum(input_tokens) FROM execution_facts) AS ft, "
                     "(SELECT count(*) FROM llm_call_facts) AS l"))[0]
    return tuple(r)


async def _expected_sums(s: Settings, log: Log) -> tuple[object, ...]:
    """The same sums from a fresh fold (nothing read from the projected tables)."""
    from flowlog.projections.fold import Coords, fold_all
    from flowlog.projections.replay import read_log
    from flowlog.projections.runner import decode_events

    items = []
    async for _tp, msgs in read_log(s, [log.topic]):
        for m in msgs:
            items.append((decode_events(log.codec, m), Coords(m.topic, m.partition, m.offset)))
    rows, result, _ = fold_all(items)
    xs = rows.executions.values()
    tokens = sum(x["input_tokens"] for x in xs)
    return (tokens, sum(x["retries"] for x in xs), len(rows.node_runs), len(result.events),
            tokens, len(result.llm_calls))


async def test_kill_9_mid_batch_then_restart(fault_settings: Settings, tmp_path: Path) -> None:
    s = fault_settings
    log = Log(s)
    log.interleaved(list(executions(600, "k9")))
    log.flush()
    env = {**os.environ, "FLOWLOG_TOPIC_PREFIX": s.topic_prefix,
           "FLOWLOG_PG_SCHEMA": s.pg_schema, "FLOWLOG_DEFAULT_PARTITIONS": "3",
           "FLOWLOG_PROJECTOR_BATCH_RECORDS": "100", "FLOWLOG_METRICS_PORT": "0",
           "FLOWLOG_PROJECTOR_LIVE_STATUS": "false"}
    kills: list[str] = []
    for round_ in range(4):
        out = (tmp_path / f"projector.{round_}.log").open("wb")
        proc = subprocess.Popen(  # noqa: ASYNC220 (a worker process to SIGKILL)
            [sys.executable, "-m", "flowlog.cli", "worker", "projector"], cwd=REPO, env=env,
            stdout=out, stderr=subprocess.STDOUT)
        try:
            if round_ < 3:
                name = ("readmodel", "analytics", "readmodel")[round_]
                state = await _in_transaction(s, f"flowlog-projector-{name}-{proc.pid}")
                proc.kill()  # SIGKILL, inside a transaction
                kills.append(state)
            else:
                await wait_caught_up(s, s.pg_schema, "readmodel", within=240)
                await wait_caught_up(s, s.pg_schema, "analytics", within=240)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(30)
    assert len(kills) == 3
    for name in ("readmodel", "analytics"):
        report = await verify(s, name)
        assert report.ok, [d.render() for d in report.differences[:10]]
    assert await _sums(s) == await _expected_sums(s, log)


async def test_postgres_restart_mid_transaction(fault_settings: Settings) -> None:
    s = fault_settings
    log = Log(s)
    log.interleaved(list(executions(1500, "pg")))
    log.flush()
    async with running(s, "readmodel") as rm, running(s, "analytics") as an:
        while rm.stats["batches"] < 2:
            await rm.committed.wait()
        await _in_transaction(s, "flowlog-projector-readmodel-")
        pg = Postgres(Settings())
        await asyncio.to_thread(pg.down)  # fast shutdown: open transactions are aborted
        await asyncio.to_thread(pg.up)  # and left running for everyone after
        await wait_caught_up(s, s.pg_schema, "readmodel", within=240)
        await wait_caught_up(s, s.pg_schema, "analytics", within=240)
        assert rm.stats["failed_batches"] + an.stats["failed_batches"] >= 1, (rm.stats,
                                                                               an.stats)
    for name in ("readmodel", "analytics"):
        report = await verify(s, name)
        assert report.ok, [d.render() for d in report.differences[:10]]
    assert await _sums(s) == await _expected_sums(s, log)
