"""`flowlog auth …` and `flowlog schedules …` through the CLI, on the test's schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from flowlog.api.auth.bootstrap import auth_service
from flowlog.streams.runtime.kafka import ensure_topics
from flowlog.streams.triggers.scheduler import connect, upsert_schedule
from typer.testing import CliRunner

from flowlog.settings import Settings
from tests.integration.ingress.hooks import read_topic


@pytest.fixture
def cli_env(ingress_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    from flowlog.settings import get_settings

    monkeypatch.setenv("FLOWLOG_PG_SCHEMA", ingress_settings.pg_schema)
    monkeypatch.setenv("FLOWLOG_TOPIC_PREFIX", ingress_settings.topic_prefix)
    get_settings.cache_clear()
    yield ingress_settings
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    from flowlog.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "240"})
    return result.exit_code, result.output


def test_auth_commands(cli_env: Settings) -> None:
    code, out = run("auth", "create-user", "ada", "--tenant", "acme", "--role", "admin",
                    "--password", "ada-password")
    assert code == 0 and "ada" in out and "admin in tenant acme" in out
    code, out = run("auth", "create-user", "ada", "--tenant", "zeta", "--role", "viewer")
    assert code == 0  # an existing user: a role in another tenant, password kept
    code, out = run("auth", "create-user", "bob", "--role", "root", "--password", "bob-password")
    assert code == 1 and "use one of viewer, operator, admin" in out
    code, out = run("auth", "create-key", "--tenant", "acme", "--scope", "executions:write",
                    "--expires-in", "30d", "--name", "ci")
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("flk_")
    code, out = run("auth", "create-key", "--scope", "everything")
    assert code == 1 and "unknown scope" in out
    code, out = run("auth", "create-key", "--expires-in", "soon")
    assert code != 0 and "not a duration" in out

    async def check() -> None:
        async with auth_service(cli_env) as svc:
            principal = await svc.authenticate(None, key)
            assert principal.tenant == "acme" and principal.name == "ci"
            assert (await svc.login("ada", "ada-password", "zeta")).access_token

    asyncio.run(check())
    code, out = run("auth", "revoke", "--key", key)
    assert code == 0 and "revoked" in out
    code, out = run("auth", "revoke", "--user", "nobody")
    assert code == 1 and "no such user" in out
    code, out = run("auth", "revoke")
    assert code == 1 and "exactly one" in out


def test_schedules_commands(cli_env: Settings) -> None:
    ensure_topics(cli_env)

    async def add() -> None:
        conn = await connect(cli_env)
        await upsert_schedule(conn, "daily", 0, 1, "default",
                              {"cron": "0 7 * * *", "timezone": "Europe/Paris"},
                              datetime(2026, 1, 1, tzinfo=UTC))
        await conn.close()

    asyncio.run(add())
    code, out = run("schedules", "list")
    assert code == 0 and "daily" in out and "0 7 * * *" in out
    code, out = run("schedules", "next", "daily", "-n", "2")
    assert code == 0 and out.count("CET") + out.count("CEST") == 2
    code, out = run("schedules", "backfill", "daily", "--from", "2026-03-28", "--to",
                    "2026-03-30T12:00:00Z", "--dry-run")
    assert code == 0 and "3 slot(s) would fire" in out
    assert "2026-03-29T05:00:00+00:00" in out  # 07:00 CEST, the day the clocks change
    code, out = run("schedules", "backfill", "daily", "--from", "2026-03-28", "--to",
                    "2026-03-30T12:00:00Z")
    assert code == 0 and "3 slot(s) fired" in out
    assert len(asyncio.run(read_topic(cli_env))) == 3
    code, out = run("schedules", "backfill", "nope", "--from", "2026-03-28", "--to",
                    "2026-03-30")
    assert code == 1 and "no schedule trigger" in out
    code, out = run("schedules", "backfill", "daily", "--from", "someday", "--to", "2026-03-30")
    assert code == 2 and "not a date or time" in out
