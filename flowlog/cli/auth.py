"""`flowlog auth create-user | create-key | revoke`: bootstrap principals (api/auth)."""

from __future__ import annotations

import asyncio
import getpass

import typer
from rich.console import Console

from flowlog.settings import get_settings

app = typer.Typer(help="Users, API keys and revocation (tables of `flowlog db migrate`).",
                  no_args_is_help=True)
_err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    _err.print(f"[red]error:[/] {message}")
    return typer.Exit(1)


@app.command("create-user")
def create_user(
    username: str = typer.Argument(..., help="Login name."),
    tenant: str = typer.Option("default", help="Tenant of the role ('*': every tenant)."),
    role: str = typer.Option("viewer", help="viewer, operator or admin."),
    password: str | None = typer.Option(
        None, help="Password (min 8 characters); asked for when a new user has none. An "
        "existing user keeps theirs unless one is given (or --set-password)."),
    set_password: bool = typer.Option(False, "--set-password", help="Change the password."),
) -> None:
    """Create a user, or give an existing user ROLE in TENANT."""
    from flowlog.api.auth.bootstrap import auth_service

    async def run() -> str:
        async with auth_service(get_settings()) as svc:
            exists = await svc.store.user_by_name(username) is not None
            pw = password
            if pw is None and (not exists or set_password):
                pw = getpass.getpass(f"password for {username}: ")
            return await svc.create_user(username, pw, tenant, role)

    try:
        user_id = asyncio.run(run())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    print(f"{username} ({user_id}): {role} in tenant {tenant}")


@app.command("create-key")
def create_key(
    tenant: str = typer.Option("default", help="Tenant the key acts in."),
    role: str = typer.Option("operator", help="viewer, operator or admin."),
    name: str = typer.Option("", help="A label shown in audit records."),
    scope: list[str] = typer.Option(["*"], help="Scopes (repeat); '*' = all the role allows."),
    expires_in: str | None = typer.Option(None, help="Lifetime, e.g. 90d, 12h (none: never)."),
) -> None:
    """Create an API key; it is printed once (only its hash is stored)."""
    from flowlog.aggregates.definition.model import parse_duration_ms
    from flowlog.api.auth.bootstrap import auth_service

    seconds = None
    if expires_in is not None:
        ms = parse_duration_ms(expires_in)
        if ms is None or ms == 0:
            raise _fail(f"--expires-in {expires_in!r} is not a duration: use e.g. 30d, 12h")
        seconds = ms / 1000

    async def run() -> tuple[str, str]:
        async with auth_service(get_settings()) as svc:
            new = await svc.create_key(tenant=tenant, role=role, name=name, scopes=scope,
                                       expires_in_s=seconds, created_by="cli")
            return new.key_id, new.key

    try:
        key_id, key = asyncio.run(run())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _err.print(f"key {key_id}: {role} in tenant {tenant}; store it now, it is not shown again")
    print(key)


@app.command()
def revoke(
    key: str | None = typer.Option(None, "--key", help="Key id (or the whole key) to revoke."),
    user: str | None = typer.Option(None, "--user", help="Username to disable (its tokens "
                                    "and sessions are refused from now on)."),
) -> None:
    """Revoke an API key or a user."""
    from flowlog.api.auth.bootstrap import auth_service

    if (key is None) == (user is None):
        raise _fail("give exactly one of --key KEY_ID or --user USERNAME")

    async def run() -> bool:
        async with auth_service(get_settings()) as svc:
            if key is not None:
                key_id = key.split(".", 1)[0].removeprefix("flk_")
                return await svc.revoke_key(key_id)
            assert user is not None
            return await svc.revoke_user(user)

    if not asyncio.run(run()):
        raise _fail(f"no such {'key' if key else 'user'}: {key or user}")
    print(f"revoked {'key ' + key if key else 'user ' + str(user)}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="auth")
