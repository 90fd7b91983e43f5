"""`flowlog schedules list | next | backfill` (streams/triggers; docs/ingress.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from flowlog.settings import get_settings

schedules = typer.Typer(help="Cron triggers: what is scheduled, the ledger, backfills.",
                        no_args_is_help=True)
_out = Console(highlight=False)
_err = Console(stderr=True)


def _when(value: str, option: str) -> datetime:
    from flowlog.aggregates.definition.trigger_checks import parse_instant
    from flowlog.streams.triggers.slots import as_utc

    parsed = parse_instant(value)
    if parsed is None:
        _err.print(f"[red]error:[/] {option} {value!r} is not a date or time: use ISO 8601, "
                   "e.g. 2026-03-01 or 2026-03-01T07:00:00+01:00 (no offset: UTC)")
        raise typer.Exit(2)
    return as_utc(parsed)


def _fmt(at: datetime, tz: object) -> str:
    return f"{at.astimezone(tz).strftime('%a %Y-%m-%d %H:%M %Z')}  ({at:%H:%M} UTC)"  # type: ignore[arg-type]


@schedules.command("list")
def list_(workflow: str | None = typer.Option(None, help="Only this workflow.")) -> None:
    """Every schedule the scheduler knows: cron, zone, cursor, next slot, ledger counts."""
    from flowlog.streams.triggers.schedule_admin import list_schedules

    views = asyncio.run(list_schedules(get_settings(), datetime.now(UTC),
                                       workflow_id=workflow))
    if not views:
        _err.print("no schedules: apply and activate a workflow with a schedule trigger and "
                   "run `flowlog worker scheduler`")
        raise typer.Exit(1)
    table = Table("workflow", "trigger", "cron", "zone", "active", "missed", "next slot",
                  "fired", "missed", "skipped")
    for v in views:
        table.add_row(v.row.workflow_id, str(v.row.trigger_index), v.spec.cron,
                      str(v.spec.tz), "yes" if v.row.active else "no", v.spec.missed,
                      _fmt(v.upcoming[0], v.spec.tz) if v.upcoming else "-",
                      *(str(v.counts.get(s, 0)) for s in ("fired", "missed", "skipped")))
    _out.print(table)


@schedules.command("next")
def next_(workflow: str = typer.Argument(..., help="Workflow id."),
          n: int = typer.Option(5, "-n", help="How many slots.")) -> None:
    """The next N slots of a workflow's schedules (local time, UTC, inside the window?)."""
    from flowlog.streams.triggers.schedule_admin import list_schedules

    views = asyncio.run(list_schedules(get_settings(), datetime.now(UTC), workflow_id=workflow,
                                       n=n))
    if not views:
        _err.print(f"[red]error:[/] {workflow} has no schedule known to the scheduler")
        raise typer.Exit(1)
    for v in views:
        _out.print(f"[bold]{workflow}[/] trigger {v.row.trigger_index}: {v.spec.cron} "
                   f"({v.spec.tz}){'' if v.row.active else ' — not active'}")
        for at in v.upcoming:
            note = "" if v.spec.in_window(at) else "  skipped: outside the window"
            _out.print(f"  {_fmt(at, v.spec.tz)}  {v.spec.execution_id(at)}{note}")


@schedules.command()
def backfill(
    workflow: str = typer.Argument(..., help="Workflow id."),
    from_: str = typer.Option(..., "--from", help="First instant (ISO; no offset: UTC)."),
    to: str = typer.Option(..., "--to", help="Last instant, included."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the slots, fire nothing."),
    trigger: int | None = typer.Option(None, help="Only this schedule trigger (index)."),
) -> None:
    """Fire the slots between --from and --to. A slot that already fired names the same
    execution (its id is derived from the slot), so nothing runs twice. --dry-run shows
    exactly the list a real run fires."""
    from rich.progress import Progress

    from flowlog.streams.triggers.schedule_admin import backfill as run_backfill

    start, end = _when(from_, "--from"), _when(to, "--to")
    settings = get_settings()
    try:
        plan = asyncio.run(run_backfill(settings, workflow, start, end, dry_run=True,
                                        trigger_index=trigger))
    except LookupError as exc:
        _err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    firing = sum(d.state == "fired" for _, d in plan)
    for row, d in plan:
        _out.print(f"{'fire' if d.state == 'fired' else 'skip'}  trigger {row.trigger_index}  "
                   f"{d.at.isoformat()}  {d.reason}")
    if dry_run:
        _out.print(f"{firing} slot(s) would fire (dry run)")
        return
    with Progress(console=_err) as bar:
        task = bar.add_task("firing", total=firing)
        asyncio.run(run_backfill(settings, workflow, start, end, dry_run=False,
                                 trigger_index=trigger,
                                 progress=lambda k: bar.advance(task, k)))
    _out.print(f"{firing} slot(s) fired")


def register(root: typer.Typer) -> None:
    root.add_typer(schedules, name="schedules")


def trigger_jsonl(workflow: str, path: str, *, version: int, tenant: str) -> None:
    """`flowlog trigger WORKFLOW --jsonl FILE`: one manual trigger per line (an input
    object, or ``{"input": {...}, "dedup_key": "..."}``), with a progress bar. Lines that
    are not valid are reported with their number; the others are still sent (exit 1)."""
    from pathlib import Path

    import orjson
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from flowlog.schemas.errors import ContractError
    from flowlog.schemas.events import TriggerReceived
    from flowlog.schemas.sdk import EventProducer

    file = Path(path)
    if not file.is_file():
        _err.print(f"[red]error:[/] --jsonl {path}: no such file")
        raise typer.Exit(2)
    lines = file.read_bytes().splitlines()
    refused: list[str] = []
    sent = 0
    columns = (TextColumn("triggering"), BarColumn(), MofNCompleteColumn())
    with EventProducer.from_settings(get_settings()) as producer, \
            Progress(*columns, console=_err) as bar:
        task = bar.add_task("trigger", total=len(lines))
        batch: list[TriggerReceived] = []

        def flush() -> None:
            nonlocal sent
            if batch:
                summary = producer.publish_many(batch)
                if not summary.ok:
                    raise RuntimeError(f"publishing failed: {summary}")
                sent += len(batch)
                bar.advance(task, len(batch))
                batch.clear()

        for n, line in enumerate(lines, start=1):
            if not line.strip():
                bar.advance(task, 1)
                continue
            try:
                item = orjson.loads(line)
                if not isinstance(item, dict):
                    raise ValueError("a line must be a JSON object")
                spec = item if "input" in item else {"input": item}
                batch.append(TriggerReceived(
                    workflow_id=workflow, workflow_version=version, source="manual",
                    input=spec["input"], dedup_key=spec.get("dedup_key"), tenant=tenant))
            except (ValueError, ContractError) as exc:
                refused.append(f"line {n}: {exc}".splitlines()[0])
                bar.advance(task, 1)
            if len(batch) >= 1000:
                flush()
        flush()
    _out.print(f"{sent} trigger(s) sent to {workflow}")
    for reason in refused[:20]:
        _err.print(f"[red]refused[/] {reason}")
    if refused:
        _err.print(f"{len(refused)} line(s) refused")
        raise typer.Exit(1)
