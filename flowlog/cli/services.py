"""`flowlog up|down|status|settings|run`: the local services and the main job."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flowlog.infra.services import manager
from flowlog.infra.services.base import ServiceError
from flowlog.settings import REPO_ROOT, Settings, get_settings

ServiceNames = Annotated[
    list[str] | None,
    typer.Argument(help="Services to act on (kafka, postgres, redis, rabbitmq); default all."),
]


def _fail(exc: Exception) -> None:
    Console(stderr=True).print(f"[red]error:[/] {exc}")
    raise typer.Exit(1)


def up(names: ServiceNames = None) -> None:
    """Install what is missing, start what is stopped, wait until each service answers."""
    try:
        manager.up(get_settings(), names or [])
    except ServiceError as exc:
        _fail(exc)


def down(names: ServiceNames = None) -> None:
    """Stop the services that flowlog started."""
    manager.down(get_settings(), names or [])


def status(names: ServiceNames = None) -> None:
    """Show each service's port, pid and health; exits 1 if any is down."""
    if not manager.status(get_settings(), names or []):
        raise typer.Exit(1)


def settings() -> None:
    """Print every setting in force with its environment variable."""
    current = get_settings()
    table = Table("environment variable", "value", "meaning")
    for name, field in Settings.model_fields.items():
        value = getattr(current, name)
        if "password" in name:
            value = "***"
        table.add_row(f"FLOWLOG_{name.upper()}", str(value), field.description or "")
    Console().print(table)


def run() -> None:
    """The main job: start the services, apply the topics and every example workflow, then
    run every engine role in this process (`flowlog worker all`) until Ctrl-C."""
    try:
        manager.up(get_settings())
    except ServiceError as exc:
        _fail(exc)
    console = Console(stderr=True)
    settings_ = get_settings()
    from flowlog.streams.runtime.kafka import ensure_topics
    from flowlog.streams.runtime.tools import apply_definition

    ensure_topics(settings_)
    for path in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        console.print(f"  {apply_definition(settings_, path)}")
    console.print("[green]services up, examples applied.[/] Running `flowlog worker all`; "
                  "try `flowlog trigger bench-5node --wait`. Ctrl-C stops it.")
    cmd = [sys.executable, "-m", "flowlog.cli", "worker", "all"]
    try:
        raise typer.Exit(subprocess.call(cmd, cwd=REPO_ROOT, env=dict(os.environ)))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    for command in (up, down, status, settings, run):
        app.command()(command)
