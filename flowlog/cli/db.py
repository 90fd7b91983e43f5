"""`flowlog db migrate|current`: the PostgreSQL schema of the read side."""

from __future__ import annotations

import typer
from rich.console import Console

from flowlog.settings import get_settings

app = typer.Typer(help="The PostgreSQL schema of read models, analytics and ingress tables.",
                  no_args_is_help=True)


@app.command()
def migrate(
    schema: str | None = typer.Option(None, help="Schema to migrate (default FLOWLOG_PG_SCHEMA)."),
) -> None:
    """Apply every migration not yet applied (idempotent: a second run changes nothing)."""
    from flowlog.projections.migrate import migrate as run

    settings = get_settings()
    try:
        at = run(settings, schema)
    except Exception as exc:  # connection refused, a failing revision: say which
        Console(stderr=True).print(
            f"[red]error:[/] migrating {settings.pg_host}:{settings.pg_port}/"
            f"{settings.pg_database} schema {schema or settings.pg_schema}: {exc}\n"
            "Is PostgreSQL up? `flowlog up postgres` starts the local one.")
        raise typer.Exit(1) from None
    Console().print(f"schema {schema or settings.pg_schema} at {', '.join(at)}")


@app.command()
def current(
    schema: str | None = typer.Option(None, help="Schema (default FLOWLOG_PG_SCHEMA)."),
) -> None:
    """Print the revisions the schema is at and those the repository holds."""
    from flowlog.projections.migrate import current as at
    from flowlog.projections.migrate import heads

    settings = get_settings()
    Console().print(f"applied: {', '.join(at(settings, schema)) or 'nothing'}")
    Console().print(f"in the repository: {', '.join(heads())}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="db")
