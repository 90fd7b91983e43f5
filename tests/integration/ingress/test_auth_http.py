"""Auth over real HTTP (uvicorn on loopback) with the real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from flowlog.api.auth import deps
from flowlog.api.auth.bootstrap import auth_service
from flowlog.api.auth.model import Principal

from flowlog.settings import Settings
from tests.integration.ingress.conftest import LiveServer


def make_app(settings: Settings) -> FastAPI:
    auth = deps.Authenticator()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with auth_service(settings) as svc:
            auth.service = svc
            yield

    app = FastAPI(lifespan=lifespan)
    deps.install(app)
    app.include_router(deps.router(auth))

    @app.get("/t/{tenant}/read")
    async def read(p: Principal = Depends(auth.require("viewer"))) -> dict[str, Any]:
        return {"who": p.label, "tenant": p.tenant, "role": p.role.name}

    @app.post("/t/{tenant}/write")
    async def write(p: Principal = Depends(auth.require("operator", "executions:write"))
                    ) -> dict[str, Any]:
        return {"who": p.label}

    return app


@pytest.fixture
async def setup(ingress_settings: Settings, live: list[LiveServer]
                ) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with auth_service(ingress_settings) as svc:
        await svc.create_user("alice", "alice-password", "acme", "operator")
        await svc.create_user("vic", "vic-password", "acme", "viewer")
        server = LiveServer(make_app(ingress_settings)).start()
        live.append(server)
        async with httpx.AsyncClient(base_url=server.url) as client:
            yield client, svc


async def login(client: httpx.AsyncClient, user: str, tenant: str = "acme") -> dict[str, Any]:
    r = await client.post("/auth/token", json={"username": user, "password": f"{user}-password",
                                               "tenant": tenant})
    assert r.status_code == 200, r.text
    return dict(r.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_roles_and_tenants(setup: tuple[httpx.AsyncClient, Any]) -> None:
    client, _ = setup
    r = await client.post("/auth/token", json={"username": "alice", "password": "nope-nope",
                                               "tenant": "acme"})
    assert r.status_code == 401 and "wrong username or password" in r.json()["error"]
    r = await client.post("/auth/token", json={"username": "alice",
                                               "password": "alice-password", "tenant": "zeta"})
    assert r.status_code == 403 and "no role in tenant 'zeta'" in r.json()["error"]
    alice = (await login(client, "alice"))["access_token"]
    vic = (await login(client, "vic"))["access_token"]
    assert (await client.get("/t/acme/read", headers=bearer(alice))).json()["role"] == "operator"
    assert (await client.post("/t/acme/write", headers=bearer(alice))).status_code == 200
    r = await client.post("/t/acme/write", headers=bearer(vic))
    assert r.status_code == 403 and "needs operator" in r.json()["error"]
    r = await client.get("/t/other/read", headers=bearer(alice))
    assert r.status_code == 403 and "not 'other'" in r.json()["error"]
    r = await client.get("/t/acme/read")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await client.get("/t/acme/read", headers=bearer(alice[:-3] + "xyz"))
    assert r.status_code == 401 and "invalid access token" in r.json()["error"]


async def test_refresh_rotates_and_reuse_revokes_the_session(
        setup: tuple[httpx.AsyncClient, Any]) -> None:
    client, _ = setup
    first = await login(client, "alice")
    r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/t/acme/read", headers=bearer(second["access_token"]))
            ).status_code == 200
    # the spent token presented again: refused, and the whole family is revoked
    r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and "already used" in r.json()["error"]
    r = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    r = await client.get("/t/acme/read", headers=bearer(second["access_token"]))
    assert r.status_code == 401 and "session revoked" in r.json()["error"]
    # logout revokes a session too; another session of the same user is untouched
    third, fourth = await login(client, "alice"), await login(client, "alice")
    assert (await client.post("/auth/logout", json={"refresh_token": third["refresh_token"]})
            ).status_code == 204
    assert (await client.get("/t/acme/read", headers=bearer(third["access_token"]))
            ).status_code == 401
    assert (await client.get("/t/acme/read", headers=bearer(fourth["access_token"]))
            ).status_code == 200


async def test_revoking_a_user_refuses_its_tokens(setup: tuple[httpx.AsyncClient, Any]) -> None:
    client, svc = setup
    tokens = await login(client, "vic")
    assert await svc.revoke_user("vic")
    r = await client.get("/t/acme/read", headers=bearer(tokens["access_token"]))
    assert r.status_code == 401 and "user revoked" in r.json()["error"]
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    r = await client.post("/auth/token", json={"username": "vic", "password": "vic-password",
                                               "tenant": "acme"})
    assert r.status_code == 401


async def test_api_keys_scoped_expiring_revocable(setup: tuple[httpx.AsyncClient, Any]) -> None:
    client, svc = setup
    key = await svc.create_key(tenant="acme", role="operator", name="ci",
                               scopes=["executions:write"])
    ro = await svc.create_key(tenant="acme", role="operator", scopes=["executions:read"])
    gone = await svc.create_key(tenant="acme", role="admin", expires_in_s=0.001)
    r = await client.post("/t/acme/write", headers={"X-API-Key": key.key})
    assert r.status_code == 200 and r.json()["who"] == "key:ci"
    assert (await client.post("/t/acme/write", headers=bearer(key.key))).status_code == 200
    r = await client.post("/t/acme/write", headers={"X-API-Key": ro.key})
    assert r.status_code == 403 and "lacks scope 'executions:write'" in r.json()["error"]
    r = await client.get("/t/acme/read", headers={"X-API-Key": gone.key})
    assert r.status_code == 401 and "expired" in r.json()["error"]
    r = await client.get("/t/acme/read", headers={"X-API-Key": key.key[:-2] + "zz"})
    assert r.status_code == 401 and "unknown API key" in r.json()["error"]
    assert await svc.revoke_key(key.key_id)  # another process's cache: Redis marker
    r = await client.post("/t/acme/write", headers={"X-API-Key": key.key})
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    stored = await svc.store.key(key.key_id)
    assert key.key.split(".")[1] not in repr(stored)  # only the hash is kept


async def test_per_principal_rate_limit_answers_429_with_retry_after(
        ingress_settings: Settings, live: list[LiveServer]) -> None:
    settings = ingress_settings.model_copy(update={"auth_rate_per_s": 1.0,
                                                   "auth_rate_burst": 3.0})
    async with auth_service(settings) as svc:
        key = await svc.create_key(tenant="acme", role="viewer")
        other = await svc.create_key(tenant="acme", role="viewer")
        server = LiveServer(make_app(settings)).start()
        live.append(server)
        async with httpx.AsyncClient(base_url=server.url) as client:
            codes = [(await client.get("/t/acme/read", headers={"X-API-Key": key.key}))
                     for _ in range(5)]
            assert [r.status_code for r in codes[:3]] == [200, 200, 200]
            limited = [r for r in codes if r.status_code == 429]
            assert limited and int(limited[0].headers["retry-after"]) >= 1
            assert "requests/s" in limited[0].json()["error"]
            # another principal has its own budget
            r = await client.get("/t/acme/read", headers={"X-API-Key": other.key})
            assert r.status_code == 200
