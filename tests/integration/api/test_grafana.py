"""The Grafana dashboard over the analytics tables (infra/grafana): every panel's SQL and
every variable's query runs on a migrated schema holding data (Grafana's macros replaced
as Grafana expands them), and the panels name the provisioned datasource."""

from __future__ import annotations

import json
import re

import asyncpg
import yaml

from tests.integration.api.conftest import REPO, World

GRAFANA = REPO / "infra" / "grafana"


def expand(sql: str, schema: str) -> str:
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 r"\1 BETWEEN '2025-01-06T00:00:00Z' AND '2025-01-07T00:00:00Z'", sql)
    sql = sql.replace("IN ($tenant)", "IN ('acme', 'zeta')")
    sql = sql.replace("IN ($workflow)", "IN (SELECT workflow_id FROM workflows)")
    assert "$" not in sql, sql
    return sql.replace("flowlog.", f'"{schema}".')


async def test_every_panel_query_runs(world: World) -> None:
    dash = json.loads((GRAFANA / "flowlog-analytics.json").read_text())
    ds = yaml.safe_load((GRAFANA / "datasource-postgres.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    conn = await asyncpg.connect(world.settings.pg_dsn,
                                 server_settings={"search_path": world.schema})
    try:
        with_rows = 0
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == uid
            for target in panel["targets"]:
                rows = await conn.fetch(expand(target["rawSql"], world.schema))
                with_rows += bool(rows)
        for var in dash["templating"]["list"]:
            assert await conn.fetch(expand(var["query"], world.schema))
    finally:
        await conn.close()
    assert with_rows >= len(dash["panels"]) - 1  # all but the failure-only panel have data
