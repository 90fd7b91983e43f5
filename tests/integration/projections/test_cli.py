"""`flowlog projections status|verify|rebuild` from the command line: verify lists rejects
and exits 1 on a tampered table; rebuild repairs it; status shows the lag."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from flowlog.cli import app
from flowlog.settings import Settings, get_settings
from tests.integration.projections.support import Log, executions, fetch, wait_caught_up
from tests.integration.projections.test_projector import proj_settings, running  # noqa: F401

pytestmark = pytest.mark.integration


def _cli(s: Settings, *args: str) -> tuple[int, str]:
    env = {"FLOWLOG_TOPIC_PREFIX": s.topic_prefix, "FLOWLOG_PG_SCHEMA": s.pg_schema,
           "FLOWLOG_DEFAULT_PARTITIONS": str(s.default_partitions), "COLUMNS": "200"}
    get_settings.cache_clear()  # the CLI reads the settings once per process
    try:
        result = CliRunner().invoke(app, ["projections", *args], env=env)
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


async def test_verify_status_rebuild(proj_settings: Settings) -> None:  # noqa: F811
    s = proj_settings
    log = Log(s)
    log.interleaved(list(executions(12, "cli")))
    log.raw("junk", b"junk")
    log.flush()
    async with running(s, "readmodel"), running(s, "analytics"):
        await wait_caught_up(s, s.pg_schema, "readmodel")
        await wait_caught_up(s, s.pg_schema, "analytics")
    code, out = await asyncio.to_thread(_cli, s, "verify")
    assert code == 0, out
    assert "readmodel: equal to the log" in out and "analytics: equal to the log" in out
    assert "reject" in out and "undecodable" in out
    code, out = await asyncio.to_thread(_cli, s, "status")
    assert code == 0 and "readmodel" in out and "execution-events" in out, out
    await fetch(s, s.pg_schema, "UPDATE workflow_executions SET status = 'failed' "
                "WHERE execution_id = 'cli-0'")
    await fetch(s, s.pg_schema, "DELETE FROM execution_events WHERE execution_id = 'cli-1' "
                "AND seq = 2")
    code, out = await asyncio.to_thread(_cli, s, "verify", "readmodel")
    assert code == 1, out
    assert "differs" in out and "status: table 'failed'" in out, out
    assert "('cli-1', 2): missing from the table" in out, out
    code, out = await asyncio.to_thread(_cli, s, "rebuild", "readmodel")
    assert code == 0, out
    assert "swapped in" in out
    code, out = await asyncio.to_thread(_cli, s, "verify", "readmodel")
    assert code == 0, out
