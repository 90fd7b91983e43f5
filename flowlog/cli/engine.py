"""`flowlog worker ROLE`, `flowlog trigger`, `flowlog watch`, `flowlog history`."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

import typer
from rich.console import Console

from flowlog.settings import get_settings

_ROLE_HELP = ("all (the default layout in one process: processor + executor), processor "
              "(per execution partition: decisions, their node tasks, timers and admissions in "
              "one step; FLOWLOG_PROCESSING_GUARANTEE), executor (node tasks), the classic "
              "layout's orchestrator and dispatcher (opt-in, run together in place of the "
              "processor, never beside it; `timers`, the dispatcher's former name, is accepted "
              "until the next release), or another process of flowlog.processes "
              "(projector, ...)")


def worker(
    roles: list[str] = typer.Argument(..., help=_ROLE_HELP),
    log_level: str = typer.Option("info", "--log-level", "-l", help="debug, info, warning"),
) -> None:
    """Run engine roles and processes until SIGINT/SIGTERM. Any number of each may run."""
    from flowlog.observability import start_process
    from flowlog.processes import PROCESSES, load
    from flowlog.streams.runtime.worker import Worker, expand

    engine_roles = [r for r in roles if r not in PROCESSES]
    others = [r for r in roles if r in PROCESSES]
    try:
        if engine_roles:  # `all` expanded, a former name replaced (warned once, here)
            engine_roles = expand(engine_roles)
    except ValueError as exc:
        Console(stderr=True).print(
            f"[red]error:[/] {exc}; other processes: {', '.join(sorted(PROCESSES)) or 'none'}")
        raise typer.Exit(2) from None

    async def main() -> None:
        settings = get_settings()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # JSON logs, tracing and /metrics /healthz /readyz (flowlog/observability)
        names = [*engine_roles, *others]
        obs = start_process(settings, "+".join(names), names, log_level=log_level)
        w = Worker(settings, engine_roles) if engine_roles else None
        if w is not None:
            await w.start()
            for role, comp in w.components.items():
                obs.watch_consumer(role, comp.consumer)
        waiters: set[asyncio.Task[None]] = {
            asyncio.create_task(load(name)(settings, stop), name=name)
            for name in others}
        if w is not None:
            waiters.add(asyncio.create_task(w.wait(), name="engine"))
        obs.ready()
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({*waiters, stopper},
                                         return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            for t in done:
                if t is not stopper:
                    t.result()  # a process that ended on its own: raise its error
        except Exception as exc:
            obs.failed(repr(exc))
            logging.getLogger("flowlog.worker").exception("worker stopped on an error")
            raise
        finally:
            obs.ready(False)
            stop.set()
            stopper.cancel()
            if w is not None:
                await w.stop()
            pending = [t for t in waiters if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=30)
            for t in pending:
                t.cancel()
            obs.stop()

    asyncio.run(main())


def trigger(
    workflow: str = typer.Argument(..., help="Workflow id."),
    input_: str = typer.Option("{}", "--input", "-i", help="The trigger's input (JSON object)."),
    version: int = typer.Option(0, help="Pin this version (0: the newest)."),
    dedup_key: str | None = typer.Option(None, help="Same key, same execution id."),
    tenant: str = typer.Option("default", help="Tenant."),
    wait: bool = typer.Option(False, "--wait", help="Follow the execution to its end."),
    timeout: float = typer.Option(300.0, help="Seconds --wait waits at most."),
    jsonl: str | None = typer.Option(None, "--jsonl", help="Bulk: one trigger per line of "
                                     "this file (an input, or {input, dedup_key})."),
) -> None:
    """Publish a manual trigger and print the execution id (or many: --jsonl FILE)."""
    from flowlog.streams.runtime import tools

    if jsonl is not None:  # ingress: flowlog/cli/triggers.py
        from flowlog.cli.triggers import trigger_jsonl

        trigger_jsonl(workflow, jsonl, version=version, tenant=tenant)
        return

    try:
        value = json.loads(input_)
    except json.JSONDecodeError as exc:
        Console(stderr=True).print(f"[red]error:[/] --input is not JSON: {exc}")
        raise typer.Exit(2) from None
    execution_id = tools.trigger(get_settings(), workflow, value, version=version,
                                 dedup_key=dedup_key, tenant=tenant)
    print(execution_id)
    if wait:
        _show(execution_id, follow=True, timeout=timeout)


def watch(
    execution_id: str = typer.Argument(..., help="Execution id."),
    timeout: float | None = typer.Option(None, help="Give up after this many seconds."),
) -> None:
    """Print the execution's events live; exits at the terminal event (1 if it failed)."""
    _show(execution_id, follow=True, timeout=timeout)


def history(
    execution_id: str = typer.Argument(..., help="Execution id."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print the execution's stored events and exit."""
    _show(execution_id, follow=False, timeout=None, as_json=as_json)


_STYLE = {"ExecutionSucceeded": "bold green", "ExecutionFailed": "bold red",
          "ExecutionCancelled": "bold yellow", "ExecutionRejected": "bold red",
          "NodeFailed": "red", "NodeSucceeded": "green", "NodeRetryScheduled": "yellow",
          "NodeDeadLettered": "red", "InputIgnored": "dim"}
_SKIP = {"event_id", "event_type", "occurred_at", "execution_id", "workflow_id",
         "workflow_version", "seq", "correlation_id", "causation_id", "tenant"}


def _show(execution_id: str, *, follow: bool, timeout: float | None,
          as_json: bool = False) -> None:
    from flowlog.streams.runtime import tools

    console = Console(highlight=False, soft_wrap=True, emoji=False)
    last: dict[str, Any] = {}

    def show(e: dict[str, Any]) -> None:
        last.clear()
        last.update(e)
        if as_json:
            print(json.dumps(e, default=str, sort_keys=True))
            return
        name = e["event_type"]
        style = _STYLE.get(name, "cyan")
        detail = " ".join(f"{k}={v}" for k, v in e.items() if k not in _SKIP and v is not None)
        console.print(f"{e['seq']:>4} {e['occurred_at']:%H:%M:%S.%f} [{style}]{name}[/] "
                      f"{detail}", markup=True)

    events = asyncio.run(tools.collect(get_settings(), execution_id, follow=follow,
                                       within=timeout, on_event=show))
    if not events:
        Console(stderr=True).print(f"no events for {execution_id}")
        raise typer.Exit(1)
    if follow and last.get("event_type") not in tools.TERMINAL:
        raise typer.Exit(3)  # timed out
    if last.get("event_type") in ("ExecutionFailed", "ExecutionRejected"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command()(worker)
    app.command()(trigger)
    app.command()(watch)
    app.command()(history)
