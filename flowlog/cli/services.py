"""`flowlog up|down|status|settings|run`: the local services and the main job."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flowlog.infra.services import manager
from flowlog.infra.services.base import ServiceError
from flowlog.settings import Settings, get_settings

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
    """Show each service's port, pid and health, then each flowlog process (from its
    /readyz): ready, consumer lag, last error. Exits 1 if anything is down."""
    settings_ = get_settings()
    ok = manager.status(settings_, names or [])
    if not names:
        ok &= _process_status(settings_)
    if not ok:
        raise typer.Exit(1)


def _process_status(settings_: Settings) -> bool:
    """The flowlog processes running on this machine (their run files), as a table."""
    import json
    import time
    import urllib.error
    import urllib.request

    from flowlog.observability.server import read_run_files

    entries = read_run_files(settings_.state_dir / "run" / "metrics")
    if not entries:
        Console().print("no flowlog processes running (`make run` or `flowlog worker ...` "
                        "starts them)")
        return True
    table = Table("process", "pid", "health", "lag (records)", "last error",
                  "/metrics /readyz at")
    ok = True
    for e in entries:
        body: dict[str, object] = {}
        if not e["alive"]:
            health = "[red]gone[/] (stale run file)"
            ok = False
        else:
            try:
                with urllib.request.urlopen(e["url"] + "/readyz", timeout=2) as resp:
                    body = json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                body = json.loads(exc.read() or b"{}")
            except (OSError, ValueError) as exc:
                body = {"failure": f"no answer: {exc}"}
            ready = bool(body.get("ready"))
            ok &= ready
            failure = body.get("failure") or ""
            health = "[green]ready[/]" if ready else f"[red]not ready[/] {failure}"
        lag = body.get("lag")
        lag_text = str(sum(lag.values())) if isinstance(lag, dict) and lag else "-"
        last = body.get("last_error")
        last_text = "-"
        if isinstance(last, dict):
            ago = time.time() - float(last.get("at", 0))
            last_text = f"{ago:.0f}s ago: {str(last.get('message'))[:60]}"
        table.add_row(e["process"], str(e["pid"]), health, lag_text, last_text,
                      e["url"].removeprefix("http://"))
    Console().print(table)
    return ok


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


def run(
    scale: list[str] = typer.Option(
        [], "--scale", help="Run N processes of a role or process, e.g. --scale executor=2 "
        "(partitions spread among them)."),
    demo: bool = typer.Option(True, "--demo/--no-demo",
                              help="Run one demo execution once everything is ready."),
    services: bool = typer.Option(True, "--services/--no-services",
                                  help="Start the local services first (flowlog up)."),
) -> None:
    """The whole system: services, schema, topics, examples, then every engine role and
    every registered process as its own OS process, a demo execution, and supervision
    (a process that dies is restarted). Ctrl-C or `flowlog stop` ends everything."""
    import signal

    from flowlog.infra.supervisor import Supervisor, SupervisorError

    console = Console(stderr=True, highlight=False)
    counts: dict[str, int] = {}
    for item in scale:
        name, _, n = item.partition("=")
        if not n.isdigit():
            _fail(ValueError(f"--scale {item!r}: write NAME=N, e.g. --scale executor=2"))
        counts[name] = int(n)
    settings_ = get_settings()
    sup = Supervisor(settings_, scale=counts, demo=demo, console=console)
    # SIGTERM (`flowlog stop`, `kill`) ends it like Ctrl-C: children are stopped in order
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    code = 0
    try:
        sup.prepare(services=services)
        sup.apply_examples()
        sup.start()
        pending = sup.wait_ready()
        if pending:
            console.print(f"[yellow]not ready yet:[/] {', '.join(pending)} (see their logs in "
                          f"{settings_.state_dir / 'logs'})")
        execution_id = None
        if demo:
            execution_id, events = sup.run_demo()
            end = events[-1] if events else {}
            outcome = end.get("event_type", "no events")
            style = "green" if outcome == "ExecutionSucceeded" else "red"
            console.print(f"demo: [{style}]{outcome}[/] after {len(events)} events; "
                          f"output {end.get('output')}")
        _where_to_look(console, settings_, sup, execution_id)
        sup.supervise()
    except (ServiceError, SupervisorError) as exc:
        console.print(f"[red]error:[/] {exc}")
        code = 1
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        sup.stop()
    raise typer.Exit(code)


def _where_to_look(console: Console, settings_: Settings, sup: object,
                   execution_id: str | None) -> None:
    from flowlog.infra.supervisor import Supervisor

    assert isinstance(sup, Supervisor)
    for note in sup.notes:
        console.print(f"[yellow]note:[/] {note}")
    lines = [
        "[bold]flowlog is running.[/] Ctrl-C here or `make stop` ends every process.",
        "  flowlog status                      each process: health, lag, last error",
        f"  logs (JSON lines)                   {settings_.state_dir / 'logs'}/<process>.log",
        f"  Prometheus targets (file_sd)        {settings_.state_dir / 'run' / 'metrics'}/*.json",
    ]
    if execution_id:
        lines.append(f"  flowlog watch {execution_id}   the demo execution")
    lines.append("  flowlog trigger support-triage --input '{\"ticket\": {\"id\": \"t-1\", "
                 "\"subject\": \"Refund\", \"body\": \"charged twice\"}}' --wait")
    from flowlog.processes import PROCESSES

    api_port = getattr(settings_, "api_port", None)
    if api_port and "api" in PROCESSES:
        lines.insert(1, f"  dashboard                           http://127.0.0.1:{api_port}/")
    if sup.prometheus_url:
        lines.append(f"  Prometheus (alerts: infra/prometheus) {sup.prometheus_url}/alerts")
    if sup.demo_url:
        lines.append(f"  demo server (not an LLM)            {sup.demo_url}/")
    console.print("\n".join(lines))


def stop() -> None:
    """Stop a running `flowlog run` / `make run` (every process it started)."""
    from flowlog.infra.supervisor import stop_running

    Console(stderr=True).print(stop_running(get_settings()))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    for command in (up, down, status, settings, run, stop):
        app.command()(command)
