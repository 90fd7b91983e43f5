"""`flowlog search-attributes add|list|backfill|remove` from the command line: refusals
that name the field and the fix (exit 2), a type mismatch found on real executions, the
backfill with its progress to `ready`, the list (table and JSON), remove."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from flowlog.cli import app
from flowlog.settings import get_settings
from tests.integration.projections.test_search_attributes import World, world  # noqa: F401


def _cli(w: World, *args: str) -> tuple[int, str]:
    env = {"FLOWLOG_TOPIC_PREFIX": w.settings.topic_prefix, "FLOWLOG_PG_SCHEMA": w.schema,
           "COLUMNS": "200"}
    get_settings.cache_clear()  # the CLI reads the settings once per process
    try:
        result = CliRunner().invoke(app, ["search-attributes", *args], env=env)
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


async def test_add_list_backfill_remove(world: World) -> None:  # noqa: F811
    run = asyncio.to_thread
    code, out = await run(_cli, world, "add", "Bad-Name", "--type", "int", "--expr", "1")
    assert code == 2 and "'Bad-Name'" in out and "lowercase" in out, out
    code, out = await run(_cli, world, "add", "n", "--type", "int", "--expr", "1 +")
    assert code == 2 and "does not compile" in out, out
    # passes the sample execution, but a real execution gives a string: refused
    code, out = await run(_cli, world, "add", "odd", "--type", "int", "--expr",
                          'execution.tenant == "default" ? 1 : execution.tenant')
    assert code == 2 and "declared int" in out and "gives str" in out, out
    code, out = await run(_cli, world, "add", "ticket", "--type", "keyword", "--expr",
                          "execution.input.ticket.id")
    assert code == 0 and "warning" in out and "has(" in out, out
    code, out = await run(_cli, world, "list", "--json")
    row = json.loads(out.splitlines()[0])
    assert (row["name"], row["state"], row["done"], row["total"]) == ("ticket", "backfilling",
                                                                     0, 10)
    code, out = await run(_cli, world, "backfill", "ticket", "--batch", "3")
    assert code == 0 and "ticket: ready, 10/10 executions" in out, out
    code, out = await run(_cli, world, "add", "retries", "--type", "int", "--wait", "--expr",
                          'events.filter(e, e.type == "NodeRetryScheduled").size()')
    assert code == 0 and "retries: ready, 10/10 executions, 0 errors" in out, out
    code, out = await run(_cli, world, "list")
    assert code == 0 and "retries" in out and "10/10 (100%)" in out and "ready" in out, out
    code, out = await run(_cli, world, "remove", "ticket")
    assert code == 0, out
    code, out = await run(_cli, world, "remove", "ticket")
    assert code == 2 and "not declared" in out, out
