"""Rebuild and swap: readers querying in a loop never see an empty or half-built table,
the rebuilt tables equal the live ones, and tables that are not the projection's stay."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from flowlog.projections.ops import rebuild, verify
from flowlog.projections.replay import table_rows

from flowlog.settings import Settings
from tests.integration.projections.support import Log, executions, fetch, wait_caught_up
from tests.integration.projections.test_projector import proj_settings, running  # noqa: F401

pytestmark = pytest.mark.integration

READ = {
    "workflow_executions": "SELECT count(*) FROM workflow_executions",
    "node_runs": "SELECT count(*) FROM node_runs",
    "execution_events": "SELECT count(*) FROM execution_events",
    "execution_facts": "SELECT count(*) FROM execution_facts",
    "rollup_executions_1m": "SELECT coalesce(sum(executions), 0) FROM rollup_executions_1m",
}


async def _snapshot(s: Settings) -> dict[str, dict]:
    from flowlog.projections.ops import columns_of

    conn = await asyncpg.connect(s.pg_dsn, server_settings={"search_path": s.pg_schema})
    try:
        return {t: await table_rows(conn, t, cols)
                for name in ("readmodel", "analytics")
                for t, cols in columns_of(name).items()}
    finally:
        await conn.close()


async def test_rebuild_swaps_while_readers_read(proj_settings: Settings) -> None:  # noqa: F811
    s = proj_settings
    log = Log(s)
    log.interleaved(list(executions(120, "rb")))
    log.flush()
    async with running(s, "readmodel"), running(s, "analytics"):
        await wait_caught_up(s, s.pg_schema, "readmodel")
        await wait_caught_up(s, s.pg_schema, "analytics")
        from flowlog.projections.analytics import rollup_loop

        stop_rollups = asyncio.Event()
        rollups = asyncio.create_task(rollup_loop(s.model_copy(update={
            "rollup_interval_s": 0.1}), stop_rollups))
        await _until_rollups_full(s)
        stop_rollups.set()
        await rollups
        before = await _snapshot(s)
        index_sql = ("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE "
                     "schemaname = $1 ORDER BY 1, 2")
        indexes = await fetch(s, s.pg_schema, index_sql, s.pg_schema)
        full = {name: (await fetch(s, s.pg_schema, sql))[0][0] for name, sql in READ.items()}
        assert all(full.values()), full
        other = await fetch(s, s.pg_schema, "SELECT to_regclass('webhook_registrations')::oid "
                            "AS t, to_regclass('auth_users')::oid AS u")
        seen: dict[str, set[int]] = {name: set() for name in READ}
        reads = [0]
        stop = asyncio.Event()

        async def reader() -> int:
            conn = await asyncpg.connect(s.pg_dsn,
                                         server_settings={"search_path": s.pg_schema})
            n = 0
            try:
                while not stop.is_set():
                    for name, sql in READ.items():
                        seen[name].add(await conn.fetchval(sql))
                    n += 1
                    reads[0] += 1
            finally:
                await conn.close()
            return n

        readers = [asyncio.create_task(reader()) for _ in range(3)]
        swapped_at: list[int] = []

        async def before_swap() -> None:
            swapped_at.append(reads[0])

        for name in ("readmodel", "analytics"):
            report = await rebuild(s, name, before_swap=before_swap)
            assert report.counts, report
        await _until(lambda: reads[0] > swapped_at[-1] + 20)  # reading the new tables
        stop.set()
        loops = await asyncio.gather(*readers)
    assert min(loops) > 5 and swapped_at[0] > 0, (loops, swapped_at)  # read throughout
    assert seen == {name: {full[name]} for name in READ}, (seen, full)
    after = await _snapshot(s)
    assert after == before
    # same index names and definitions (other areas' migrations name them, e.g. the API's)
    assert await fetch(s, s.pg_schema, index_sql, s.pg_schema) == indexes
    assert await fetch(s, s.pg_schema, "SELECT to_regclass('webhook_registrations')::oid AS t, "
                       "to_regclass('auth_users')::oid AS u") == other
    assert other[0]["t"] is not None
    leftovers = await fetch(s, s.pg_schema, "SELECT nspname FROM pg_namespace WHERE "
                            "nspname LIKE $1", f"{s.pg_schema}__%")
    assert leftovers == []
    for name in ("readmodel", "analytics"):
        assert (await verify(s, name)).ok


async def _until_rollups_full(s: Settings) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        got = await fetch(s, s.pg_schema, "SELECT (SELECT coalesce(sum(executions), 0) FROM "
                          "rollup_executions_1m) AS r, (SELECT count(*) FROM execution_facts)"
                          " AS f, (SELECT count(*) FROM rollup_dirty) AS d")
        if got[0]["r"] == got[0]["f"] and got[0]["d"] == 0:
            return
        assert loop.time() < deadline, dict(got[0])
        await asyncio.sleep(0.1)


async def _until(check: object, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


async def test_rebuild_from_a_time(proj_settings: Settings) -> None:  # noqa: F811
    """`--from TIME`: each partition starts at TIME; executions begun earlier are rejected
    as unknown (listed), the later ones are rebuilt whole."""
    from datetime import UTC, datetime

    s = proj_settings
    log = Log(s)
    early = list(executions(6, "early"))
    log.interleaved([x[:1] for x in early])  # only their first decisions
    log.flush()
    await asyncio.sleep(0.05)  # Kafka timestamps are milliseconds: a clear boundary
    since = datetime.now(UTC)
    await asyncio.sleep(0.05)
    log.interleaved([x[1:] for x in early] + list(executions(5, "late")))
    log.flush()
    report = await rebuild(s, "readmodel", since=since)
    assert report.counts["workflow_executions"] == 5
    rows = await fetch(s, s.pg_schema, "SELECT execution_id FROM workflow_executions")
    assert {r["execution_id"] for r in rows} == {f"late-{i}" for i in range(5)}
    rejects = await fetch(s, s.pg_schema, "SELECT reason FROM projection_rejects")
    assert len(rejects) == sum(len(x) - 1 for x in early)
    assert all("unknown execution early-" in r["reason"] for r in rejects)


async def test_rebuild_refuses_when_a_view_depends_on_a_swapped_table(
        proj_settings: Settings) -> None:  # noqa: F811
    from flowlog.projections.ops import RebuildError

    s = proj_settings
    await fetch(s, s.pg_schema, "CREATE VIEW someone_elses AS SELECT execution_id FROM "
                "workflow_executions")
    with pytest.raises(RebuildError, match="view someone_elses on workflow_executions"):
        await rebuild(s, "readmodel")
    assert (await fetch(s, s.pg_schema, "SELECT to_regclass('someone_elses') AS v"))[0]["v"]
