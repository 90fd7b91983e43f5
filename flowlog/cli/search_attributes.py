"""`flowlog search-attributes add|list|backfill|remove`: operator-declared attributes of
executions (a name, a type and a CEL expression over an execution's events), backfilled
from history and then usable as filters of GET /api/executions (`attr.NAME=value`)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowlog.settings import get_settings

app = typer.Typer(
    help="Search attributes: declare one (name, type, CEL expression over an execution's "
    "events), backfill it over existing executions, list them with their backfill progress, "
    "remove one. Filter with GET /api/executions?attr.NAME=value. The expression sees "
    "`events` (a list of {type, seq, occurred_at, node_id, data}) and `execution` (status, "
    "tenant, input, output, cost_usd, ...); see docs/api.md.",
    no_args_is_help=True)
_SCHEMA = typer.Option(None, help="PostgreSQL schema (default FLOWLOG_PG_SCHEMA).")
err = Console(stderr=True)
SAMPLE = 20  # newest executions the expression is tried on at declare time


def _conn(schema: str | None) -> Any:
    from flowlog.projections import search_attributes_store as store

    s = get_settings()
    try:
        return store.connect(s.pg_dsn, schema or s.pg_schema)
    except Exception as exc:
        err.print(f"[red]error:[/] {type(exc).__name__}: {exc}\nIs PostgreSQL up at "
                  f"{s.pg_host}:{s.pg_port}? `flowlog up`, then `flowlog db migrate`.")
        raise typer.Exit(1) from None


def _audit(schema: str | None, required: bool = True) -> Any:
    """The audit store (None when it is missing and not `required`)."""
    from flowlog.projections.audit.store import AuditStore, AuditStoreMissing

    s = get_settings()
    try:
        return AuditStore(s, schema or s.pg_schema, readonly=True)
    except AuditStoreMissing as exc:
        if not required:
            err.print(f"[yellow]warning:[/] {exc}. The expression is checked on the sample "
                      "execution only; the backfill waits for the audit store.")
            return None
        err.print(f"[red]error:[/] {exc}. The backfill reads each execution's events there.")
        raise typer.Exit(1) from None


@app.command()
def add(
    name: str = typer.Argument(..., help="lowercase identifier, e.g. customer_tier"),
    type_: str = typer.Option(..., "--type", help="keyword | int | double | bool | datetime"),
    expr: str = typer.Option(..., "--expr", help="CEL over `events` and `execution`, e.g. "
                             "'events.filter(e, e.type == \"NodeRetryScheduled\").size()'"),
    wait: bool = typer.Option(False, "--wait", help="Backfill now, with a progress bar "
                              "(otherwise `flowlog worker search-attributes` does it)."),
    schema: str | None = _SCHEMA,
) -> None:
    """Declare a search attribute: checks the name, compiles and type-checks the expression
    (on a sample execution and on the newest executions), stores it; the backfill follows."""
    from flowlog.aggregates.errors import ExpressionError
    from flowlog.projections import search_attributes as sa
    from flowlog.projections import search_attributes_store as store

    try:
        decl = sa.declaration(name, type_, expr)
    except sa.SearchAttributeError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    conn = _conn(schema)
    audit = _audit(schema, required=wait)
    try:
        failures = 0
        for (eid,) in conn.execute("SELECT execution_id FROM workflow_executions "
                                   "ORDER BY created_at DESC LIMIT %s",
                                   (SAMPLE if audit is not None else 0,)):
            events = audit.events(eid)
            if not events:
                continue
            try:
                raw = decl.expression.evaluate(sa.activation(events))
            except ExpressionError as exc:
                failures += 1
                if failures == 1:
                    err.print(f"[yellow]warning:[/] on execution {eid}: {exc}")
                continue
            try:
                sa.coerce(decl, raw, f"execution {eid}")
            except sa.SearchAttributeError as exc:
                err.print(f"[red]error:[/] {exc}")
                raise typer.Exit(2) from None
        if failures:
            err.print(f"[yellow]warning:[/] the expression failed on {failures} of the newest "
                      f"{SAMPLE} executions; such executions get no value (counted as errors "
                      "in `flowlog search-attributes list`). Guard with has(...) to avoid it.")
        try:
            row = store.declare(conn, decl)
        except sa.SearchAttributeError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        Console().print(f"declared {row.name} ({row.type}); backfilling over {row.total:,} "
                        "executions")
        if wait:
            _backfill(conn, audit, name, 200)
    finally:
        if audit is not None:
            audit.close()
        conn.close()


def _backfill(conn: Any, audit: Any, name: str, batch: int) -> None:
    from flowlog.projections import search_attributes_store as store

    row = store.get(conn, name)
    if row is None:
        err.print(f"[red]error:[/] search attribute {name!r} is not declared "
                  "(`flowlog search-attributes list`)")
        raise typer.Exit(2)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn()) as bar:
        task = bar.add_task(f"backfill {name}", total=max(row.total, row.done),
                            completed=row.done, errors=row.errors)

        def tick(_: store.BatchResult) -> None:
            now = store.get(conn, name)
            if now is not None:
                bar.update(task, total=max(now.total, now.done), completed=now.done,
                           errors=now.errors)

        final = store.backfill(conn, store.audit_source(audit), name, batch,
                               on_batch=tick)
    Console().print(f"{name}: {final.state}, {final.done:,}/{final.total:,} executions, "
                    f"{final.errors:,} errors, {final.waiting:,} waiting for the audit store")


@app.command()
def backfill(name: str, batch: int = typer.Option(200, min=1, max=10_000,
                                                  help="Executions per transaction."),
             schema: str | None = _SCHEMA) -> None:
    """Run (or resume) the backfill of NAME in the foreground, with a progress bar."""
    conn = _conn(schema)
    audit = _audit(schema)
    try:
        _backfill(conn, audit, name, batch)
    finally:
        audit.close()
        conn.close()


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
          schema: str | None = _SCHEMA) -> None:
    """Declared search attributes with their backfill progress (done / total, state)."""
    from flowlog.projections import search_attributes_store as store

    conn = _conn(schema)
    try:
        rows = store.list_attributes(conn)
    finally:
        conn.close()
    if as_json:
        for r in rows:
            print(json.dumps(r.as_dict(), default=str))
        return
    table = Table("name", "type", "state", "progress", "errors", "waiting", "expression")
    for r in rows:
        pct = 100.0 * r.done / r.total if r.total else 100.0
        table.add_row(r.name, r.type, r.state, f"{r.done:,}/{r.total:,} ({pct:.0f}%)",
                      str(r.errors), str(r.waiting), r.expression)
    Console().print(table if rows else "no search attributes declared "
                    "(flowlog search-attributes add --help)")


@app.command()
def remove(name: str, schema: str | None = _SCHEMA) -> None:
    """Remove a search attribute and its values (filters naming it then answer 400)."""
    from flowlog.projections import search_attributes_store as store

    conn = _conn(schema)
    try:
        gone = store.remove(conn, name)
    finally:
        conn.close()
    if not gone:
        err.print(f"[red]error:[/] search attribute {name!r} is not declared "
                  "(`flowlog search-attributes list`)")
        raise typer.Exit(2)
    Console().print(f"removed {name}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="search-attributes")
