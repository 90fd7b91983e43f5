"""`flowlog projections status|rebuild|verify`: the read side's offsets and lag, rebuilding
a projection from the log, and checking the tables against a fresh fold."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flowlog.settings import get_settings

app = typer.Typer(
    help="Projections (read models and analytics in PostgreSQL): lag, rebuild, verify. "
    "Projections: readmodel (workflows, workflow_versions, workflow_executions, triggers, "
    "node_runs, execution_events), analytics (execution/node-run/LLM-call facts, per-minute "
    "rollups). See docs/projections.md.",
    no_args_is_help=True)
_SCHEMA = typer.Option(None, help="PostgreSQL schema (default FLOWLOG_PG_SCHEMA).")
err = Console(stderr=True)


def _names(name: str | None) -> list[str]:
    from flowlog.projections.ops import NAMES

    if name is None:
        return list(NAMES)
    if name not in NAMES:
        err.print(f"[red]error:[/] unknown projection {name!r}; choose one of "
                  f"{', '.join(NAMES)}")
        raise typer.Exit(2)
    return [name]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>10,.0f} events/s"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


class _Ticker:
    """Feeds a progress bar: records read, and events applied per second."""

    def __init__(self, bar: Progress, description: str) -> None:
        self.bar = bar
        self.task = bar.add_task(description, total=None, rate=0.0)
        self.began = time.monotonic()
        self.events = 0

    def total(self, records: int) -> None:
        self.bar.update(self.task, total=records)

    def __call__(self, records: int, events: int) -> None:
        self.events += events
        rate = self.events / max(1e-6, time.monotonic() - self.began)
        self.bar.update(self.task, advance=records, rate=rate)


def _db_error(exc: Exception) -> None:
    s = get_settings()
    err.print(f"[red]error:[/] {type(exc).__name__}: {exc}\nIs PostgreSQL up at "
              f"{s.pg_host}:{s.pg_port} and the schema migrated? `flowlog up` then "
              "`flowlog db migrate`.")


@app.command()
def status(schema: str | None = _SCHEMA) -> None:
    """Each projector's stored offset per partition, the partition's end, and the lag."""
    from flowlog.projections.ops import status as get

    try:
        rows = asyncio.run(get(get_settings(), schema))
    except Exception as exc:
        _db_error(exc)
        raise typer.Exit(1) from None
    table = Table("projector", "topic", "partition", "stored offset", "end", "lag (records)",
                  "last commit")
    for r in rows:
        table.add_row(r.projector, r.topic, str(r.partition), str(r.stored), str(r.end),
                      f"[red]{r.lag}[/]" if r.lag else "0",
                      r.updated_at.isoformat(timespec="seconds") if r.updated_at else "never")
    Console().print(table)
    if not rows:
        Console().print("no partitions: the topics do not exist yet (`flowlog topics apply`)")


@app.command()
def verify(
    name: str | None = typer.Argument(None, help="readmodel or analytics (default: both)."),
    schema: str | None = _SCHEMA,
    limit: int = typer.Option(50, help="Differences printed per projection at most."),
) -> None:
    """Compare every table with a fresh fold of the log (up to the stored offsets); list
    every difference and every reject. Exit 1 on any difference."""
    from flowlog.projections.ops import verify as check

    settings = get_settings()
    bad = False
    for n in _names(name):
        with _progress() as bar:
            tick = _Ticker(bar, f"verify {n}")
            try:
                report = asyncio.run(check(settings, n, schema, progress=tick))
            except Exception as exc:
                _db_error(exc)
                raise typer.Exit(1) from None
        out = Console()
        for table, (have, want) in report.counts.items():
            out.print(f"{n}.{table}: {have} rows, fold {want}")
        for d in report.differences[:limit]:
            out.print(f"[red]difference[/] {d.render()}")
        if len(report.differences) > limit:
            out.print(f"… and {len(report.differences) - limit} more differences")
        for t, p, o, reason in report.rejects:
            out.print(f"[yellow]reject[/] {t}[{p}]@{o}: {reason}")
        for t, p, o, reason in report.missing_rejects:
            out.print(f"[red]reject missing from projection_rejects[/] {t}[{p}]@{o}: {reason}")
        out.print(f"{n}: {'[green]equal to the log[/]' if report.ok else '[red]DIFFERS[/]'}"
                  f" ({len(report.rejects)} rejects)")
        bad = bad or not report.ok
    if bad:
        raise typer.Exit(1)


@app.command()
def rebuild(
    name: str | None = typer.Argument(None, help="readmodel or analytics (default: both)."),
    from_: datetime | None = typer.Option(
        None, "--from", help="Start each partition at this time (UTC if no zone) instead "
        "of the beginning; executions begun earlier are rejected as unknown."),
    schema: str | None = _SCHEMA,
) -> None:
    """Rebuild from the log into a shadow schema, check counts and checksums against the
    fold, then swap it in one transaction while readers keep reading."""
    from flowlog.projections.ops import RebuildError
    from flowlog.projections.ops import rebuild as run

    settings = get_settings()
    since = from_.replace(tzinfo=from_.tzinfo or UTC) if from_ else None
    for n in _names(name):
        with _progress() as bar:
            tick = _Ticker(bar, f"rebuild {n}")
            try:
                report = asyncio.run(run(settings, n, schema, since, progress=tick,
                                         total=tick.total))
            except RebuildError as exc:
                err.print(f"[red]error:[/] {exc}\nNothing was swapped; the live tables are "
                          "unchanged.")
                raise typer.Exit(1) from None
            except Exception as exc:
                _db_error(exc)
                raise typer.Exit(1) from None
        out = Console()
        for table, count in report.counts.items():
            out.print(f"{n}.{table}: {count} rows, checksum {report.checksums[table][:16]}")
        out.print(f"{n}: {report.events:,} events from {report.records:,} records in "
                  f"{report.seconds:.1f}s ({report.events_per_s:,.0f} events/s); "
                  f"{report.gap_records} records caught up at the swap; swapped in.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="projections")
