"""`flowlog dlq list|show|retry|discard`: dead letters on RabbitMQ (docs/deadletters.md)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flowlog.settings import get_settings

app = typer.Typer(
    help="Dead letters: tasks that failed past every retry, parked on RabbitMQ. List them, "
    "show one, retry or discard them one by one or in bulk by filter. Every retry or "
    "discard is a command on Kafka that records who (--by) and why (--reason).",
    no_args_is_help=True)

_STAGE_HELP = "Queues to look in: parked (default), delay (waiting on the ladder), due, all."
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def _age(text: str | None) -> float | None:
    if text is None:
        return None
    m = _AGE.match(text.strip())
    if not m:
        raise typer.BadParameter(f"--older-than {text!r}: give a number with s, m, h or d, "
                                 "e.g. 90s, 10m, 2h, 1d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _filter(ids: list[str] | None, workflow: str | None, node_type: str | None,
            error_type: str | None, execution: str | None, older_than: str | None,
            stage: str) -> Any:
    from flowlog.streams.deadletters.ops import STAGES, Filter

    stages = STAGES if stage == "all" else (stage,)
    if stage != "all" and stage not in STAGES:
        raise typer.BadParameter(f"--stage {stage!r}: use one of {', '.join(STAGES)}, all")
    return Filter(message_ids=frozenset(ids or ()), workflow=workflow, node_type=node_type,
                  error_type=error_type, execution_id=execution,
                  older_than_s=_age(older_than), stages=stages)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ConnectionError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _table(rows: list[dict[str, Any]]) -> Table:
    t = Table(show_lines=False)
    for col in ("message_id", "queue", "workflow", "node", "type", "error", "rung", "age",
                "execution"):
        t.add_column(col)
    for r in rows:
        err = r.get("problem") or f"{r.get('error_type', '')}: {r.get('error', '')}"
        t.add_row(r["message_id"], r["queue"], r.get("workflow_id", "?"), r.get("node_id", "?"),
                  r.get("node_type", "?"), err[:60], str(r.get("rung", "")),
                  f"{r['age_s']:.0f}s", r.get("execution_id", "?"))
    return t


_ID = typer.Argument(None, help="Message ids (from `flowlog dlq list`); none: every match.")
_WF = typer.Option(None, "--workflow", "-w", help="Only this workflow id.")
_NT = typer.Option(None, "--node-type", "-t", help="Only this node type (tool, webhook, agent).")
_ET = typer.Option(None, "--error-type", "-e", help="Only this error type (e.g. TaskError).")
_EX = typer.Option(None, "--execution", help="Only this execution id.")
_OLD = typer.Option(None, "--older-than", help="Only dead letters older than this (90s, 10m, 2h).")
_ST = typer.Option("parked", "--stage", help=_STAGE_HELP)


@app.command("list")
def list_(ids: list[str] | None = _ID, workflow: str | None = _WF, node_type: str | None = _NT,
          error_type: str | None = _ET, execution: str | None = _EX,
          older_than: str | None = _OLD, stage: str = _ST,
          as_json: bool = typer.Option(False, "--json", help="JSON lines, one per letter.")
          ) -> None:
    """List dead letters matching the filters (they stay where they are)."""
    from flowlog.streams.deadletters.ops import list_letters

    flt = _filter(ids, workflow, node_type, error_type, execution, older_than, stage)
    held = _run(list_letters(get_settings(), flt))
    now = time.time()
    rows = [h.summary(now) for h in held]
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, sort_keys=True))
        return
    Console().print(_table(rows))
    Console().print(f"{len(rows)} dead letter(s)")


@app.command()
def show(message_id: str = typer.Argument(..., help="The message id."),
         stage: str = typer.Option("all", "--stage", help=_STAGE_HELP)) -> None:
    """Everything one dead letter carries: execution, node, attempts, error, input, config."""
    from flowlog.streams.deadletters.ops import list_letters

    flt = _filter([message_id], None, None, None, None, None, stage)
    held = _run(list_letters(get_settings(), flt))
    if not held:
        Console(stderr=True).print(f"[red]error:[/] no dead letter {message_id} in "
                                   f"{stage}; `flowlog dlq list --stage all` lists them")
        raise typer.Exit(1)
    h = held[0]
    doc: dict[str, Any] = {"queue": h.queue, "copies": 1 + len(h.copies),
                           "problem": h.problem, "headers": dict(h.message.headers or {})}
    if h.letter is not None:
        doc["dead_letter"] = h.letter.model_dump(mode="json")
    else:
        doc["body"] = h.message.body.decode("utf-8", "replace")
    typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _act(action: str, ids: list[str] | None, workflow: str | None, node_type: str | None,
         error_type: str | None, execution: str | None, older_than: str | None, stage: str,
         by: str | None, reason: str, dry_run: bool, then: str = "cancel") -> None:
    from flowlog.streams.deadletters.ops import act, default_user

    flt = _filter(ids, workflow, node_type, error_type, execution, older_than, stage)
    if not (ids or workflow or node_type or error_type or execution or older_than):
        Console(stderr=True).print(f"[red]error:[/] {action} needs message ids or a filter "
                                   "(--workflow, --node-type, --error-type, --execution, "
                                   "--older-than); see `flowlog dlq list`")
        raise typer.Exit(2)
    settings = get_settings()
    who = by or default_user()
    console = Console()
    with Progress(TextColumn(f"{action}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=dry_run) as bar:
        task = bar.add_task(action, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        out = _run(act(settings, flt, action=action, by=who, reason=reason, then=then,
                       dry_run=dry_run, progress=progress))
    now = time.time()
    if dry_run:
        console.print(_table([h.summary(now) for h in out.matched]))
        console.print(f"dry run: {len(out.matched)} dead letter(s) would be "
                      f"{'retried' if action == 'retry' else 'discarded'} by {who}")
        return
    console.print(f"{action}: {out.done} of {len(out.matched)} done by {who} ({reason})")
    for h in out.skipped:
        console.print(f"[yellow]skipped[/] {h.message_id}: {h.problem} (discard it instead)")


_BY = typer.Option(None, "--by", help="Who acts (recorded in the command); default the OS user.")
_WHY = typer.Option(..., "--reason", "-r", help="Why (recorded in the command).")
_DRY = typer.Option(False, "--dry-run", help="Only show what would be taken.")


@app.command()
def retry(ids: list[str] | None = _ID, workflow: str | None = _WF, node_type: str | None = _NT,
          error_type: str | None = _ET, execution: str | None = _EX,
          older_than: str | None = _OLD, stage: str = _ST, by: str | None = _BY,
          reason: str = _WHY, dry_run: bool = _DRY) -> None:
    """Retry dead letters now: a RetryNodeRequested per letter (its id derived from the
    message id, so a repeat is a no-op); the incident resolves when the node succeeds."""
    _act("retry", ids, workflow, node_type, error_type, execution, older_than, stage, by,
         reason, dry_run)


@app.command()
def discard(ids: list[str] | None = _ID, workflow: str | None = _WF,
            node_type: str | None = _NT, error_type: str | None = _ET,
            execution: str | None = _EX, older_than: str | None = _OLD, stage: str = _ST,
            by: str | None = _BY, reason: str = _WHY, dry_run: bool = _DRY,
            then: str = typer.Option("cancel", "--then", help="What happens to the execution: "
                                     "cancel it, or resume past the node (output null).")
            ) -> None:
    """Drop dead letters for good, and cancel their executions (or --then resume)."""
    if then not in ("cancel", "resume"):
        raise typer.BadParameter(f"--then {then!r}: use cancel or resume")
    _act("discard", ids, workflow, node_type, error_type, execution, older_than, stage, by,
         reason, dry_run, then)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dlq")
