"""FastAPI glue: the ``Authenticator`` dependency and the ``/auth`` endpoints.

    auth = Authenticator()          # auth.service = ... in the app's lifespan
    @app.post("/workflows/{tenant}/x")
    async def x(principal: Principal = Depends(auth.require("operator", "workflows:write"))):

``require`` answers 401 (no or bad credentials), 403 (role, scope or tenant: the tenant is
the ``tenant`` path or query parameter, else the ``X-Flowlog-Tenant`` header, when the
request names one) or 429 with ``Retry-After``; the handler runs only when allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from flowlog.api.auth.model import AuthError, Principal, Role
from flowlog.api.auth.service import AuthService, TokenPair
from pydantic import BaseModel, Field


def error_response(exc: AuthError) -> JSONResponse:
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(exc.retry_after + 0.999)))
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


def install(app: FastAPI) -> None:
    """Turn every ``AuthError`` into its status with a JSON body saying what to do."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        return error_response(exc)

    app.add_exception_handler(AuthError, handler)


def requested_tenant(request: Request) -> str | None:
    return (request.path_params.get("tenant") or request.query_params.get("tenant")
            or request.headers.get("x-flowlog-tenant"))


class Authenticator:
    """Holds the process's ``AuthService``; apps create it at import and set ``service``
    in their lifespan (the service's pools belong to the serving loop)."""

    def __init__(self, service: AuthService | None = None) -> None:
        self._service = service

    @property
    def service(self) -> AuthService:
        if self._service is None:
            raise RuntimeError("Authenticator.service is not set (the app's lifespan sets it)")
        return self._service

    @service.setter
    def service(self, value: AuthService) -> None:
        self._service = value

    def require(self, role: Role | str = Role.viewer, scope: str | None = None
                ) -> Callable[[Request], Awaitable[Principal]]:
        need = Role.parse(role) if isinstance(role, str) else role

        async def dependency(request: Request) -> Principal:
            principal = await self.service.authenticate(
                request.headers.get("authorization"), request.headers.get("x-api-key"))
            principal.require(need, scope, requested_tenant(request))
            return principal

        return dependency


class LoginBody(BaseModel):
    username: str
    password: str
    tenant: str = Field("default", description="The tenant the tokens act in.")


class RefreshBody(BaseModel):
    refresh_token: str


def _pair(pair: TokenPair) -> dict[str, Any]:
    return {"access_token": pair.access_token, "refresh_token": pair.refresh_token,
            "token_type": pair.token_type, "expires_in": pair.expires_in}


def router(auth: Authenticator) -> APIRouter:
    """``POST /auth/token`` (log in), ``/auth/refresh`` (rotate), ``/auth/logout``."""
    r = APIRouter(prefix="/auth", tags=["auth"])

    @r.post("/token", summary="Log in: an access token and a refresh token")
    async def token(body: LoginBody) -> dict[str, Any]:
        return _pair(await auth.service.login(body.username, body.password, body.tenant))

    @r.post("/refresh", summary="Rotate a refresh token (a spent one revokes the session)")
    async def refresh(body: RefreshBody) -> dict[str, Any]:
        return _pair(await auth.service.refresh(body.refresh_token))

    @r.post("/logout", status_code=204, summary="Revoke the session of a refresh token")
    async def logout(body: RefreshBody) -> None:
        await auth.service.logout(body.refresh_token)

    return r
