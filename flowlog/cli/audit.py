"""`flowlog audit`, `flowlog replay what-if|verify`, `flowlog lineage`: the audit store's
tooling. Thin: every command calls `flowlog.projections.audit.operations` and prints.

Bad input (an unknown execution id, a seq past the end, a definition that does not
validate) prints what was given and what exists, writes nothing, and exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table
from rich.tree import Tree

from flowlog.settings import get_settings

if TYPE_CHECKING:
    from flowlog.projections.audit.store import AuditStore

T = TypeVar("T")
replay_app = typer.Typer(help="Replay recorded executions with no side effects: what-if "
                         "another definition, and the determinism check.",
                         no_args_is_help=True)
_JSON = typer.Option(False, "--json", help="Print one JSON document instead of tables.")


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True, emoji=False)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/] {message}")
    return typer.Exit(2)


@contextmanager
def _store() -> Iterator[AuditStore]:
    from flowlog.projections.audit.store import AuditStore

    store = AuditStore(get_settings(), readonly=True)
    try:
        yield store
    finally:
        store.close()


def _run(work: Callable[[], T]) -> T:
    """Run `work`; bad input and a missing store exit 2 with the message."""
    from flowlog.projections.audit.errors import AuditError

    try:
        return work()
    except AuditError as exc:
        raise _fail(str(exc)) from None


def _dump(value: Any) -> None:
    print(json.dumps(value, default=str, sort_keys=True, indent=1))


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str, sort_keys=True) if not isinstance(value, str) \
        else value
    return text if len(text) <= width else text[: width - 1] + "…"


# --- flowlog audit ---------------------------------------------------------------------------

def audit(
    execution_id: str = typer.Argument(..., help="Execution id."),
    at: str | None = typer.Option(None, "--at", metavar="SEQ|TIME",
                                  help="The state as of event SEQ, or as of a time (ISO 8601)."),
    diff: tuple[str, str] | None = typer.Option(
        None, "--diff", metavar="A B", help="What changed between two points (seqs or times)."),
    as_json: bool = _JSON,
) -> None:
    """An execution's full history from the audit store (events, node runs, model and tool
    calls, operator commands); with --at its state then; with --diff the changed fields."""
    from flowlog.projections.audit import operations as ops

    def work() -> dict[str, Any]:
        with _store() as store:
            if diff is not None:
                return ops.diff(store, execution_id, diff[0], diff[1])
            if at is not None:
                return ops.state(store, execution_id, at)
            return ops.history(store, execution_id)

    result = _run(work)
    if as_json:
        _dump(result)
    elif diff is not None:
        _print_diff(result)
    elif at is not None:
        _print_state(result)
    else:
        _print_history(result)


def _print_history(h: dict[str, Any]) -> None:
    c = _console()
    c.print(f"[bold]{h['execution_id']}[/] {h['workflow_id']} v{h['workflow_version']}: "
            f"{h['status']}, {len(h['events'])} events")
    t = Table("seq", "time", "event", "details", box=None)
    skip = {"event_id", "event_type", "occurred_at", "execution_id", "workflow_id",
            "workflow_version", "seq", "correlation_id", "causation_id", "tenant"}
    for e in h["events"]:
        details = {k: v for k, v in e.items() if k not in skip}
        t.add_row(str(e["seq"]), e["occurred_at"], e["event_type"], _short(details, 80))
    c.print(t)
    runs = Table("node", "attempt", "type", "status", "duration ms", "calls", "output/error",
                 title="node runs", box=None)
    for r in h["node_runs"]:
        calls = f"{r['model_calls']} model, {r['tool_calls']} tool" \
            if r["model_calls"] or r["tool_calls"] else ""
        runs.add_row(r["node_id"], str(r["attempt"]), r["node_type"] or "", r["status"],
                     str(r["duration_ms"] or ""), calls, _short(r["error"] or r["output"]))
    c.print(runs)
    if h["operator_commands"]:
        cmds = Table("seq", "time", "command", "node", "who", "why", "effect",
                     title="operator commands", box=None)
        for cmd in h["operator_commands"]:
            cmds.add_row(str(cmd["seq"]), cmd["at"], cmd["command"], cmd["node_id"] or "",
                         cmd["who"] or "(not recorded)", cmd["why"] or "",
                         ", ".join(cmd["effect"]))
        c.print(cmds)


def _print_state(s: dict[str, Any]) -> None:
    c = _console()
    c.print(f"[bold]{s['execution_id']}[/] at seq {s['seq']} of {s.get('last_seq', s['seq'])}:"
            f" {s['status']}")
    t = Table("node", "status", "attempt", "output/error", box=None)
    for node_id, run in s["nodes"].items():
        t.add_row(node_id, run["status"], str(run["attempt"]),
                  _short(run["error"] or run["output"]))
    c.print(t)
    if s["pending_timers"]:
        timers = Table("timer", "kind", "node", "due", title="pending timers", box=None)
        for timer_id, tm in s["pending_timers"].items():
            timers.add_row(timer_id, tm["kind"], tm["node_id"] or "", tm["due_at"])
        c.print(timers)
    if s["output"] is not None or s["error"] is not None:
        c.print(f"output: {_short(s['output'], 200)}  error: {_short(s['error'], 200)}")


def _print_diff(d: dict[str, Any]) -> None:
    c = _console()
    c.print(f"[bold]{d['execution_id']}[/] seq {d['from_seq']} → {d['to_seq']}: "
            f"{len(d['changes'])} changed fields ({', '.join(d['events_between']) or 'no events'})")
    t = Table("field", "change", "before", "after", box=None)
    for ch in d["changes"]:
        t.add_row(ch["path"], ch["kind"], _short(ch["before"]), _short(ch["after"]))
    c.print(t)


# --- flowlog replay --------------------------------------------------------------------------

def _progress(label: str) -> tuple[Progress, Callable[[int, int], None]]:
    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


@replay_app.command("what-if")
def what_if(
    execution_id: str | None = typer.Argument(
        None, help="One execution; or use --workflow (and --since) for a batch."),
    definition: Path | None = typer.Option(None, "--definition", "-d",
                                           help="A definition file (YAML or JSON) to replay with."),
    version: int | None = typer.Option(None, "--version", "-v",
                                       help="A published version of the execution's workflow."),
    workflow: str | None = typer.Option(None, "--workflow", "-w",
                                        help="Batch: every stored execution of this workflow."),
    since: str | None = typer.Option(None, "--since", help="Batch: started at or after (ISO)."),
    as_json: bool = _JSON,
) -> None:
    """Feed recorded triggers and node results through another definition (no tasks issued,
    nothing written) and show, node by node, where decisions differ and which nodes would
    need a new outside call."""
    from flowlog.projections.audit import operations as ops
    from flowlog.projections.audit.definitions import RecordedDefinitions, from_file
    from flowlog.projections.audit.errors import AuditInputError

    if (definition is None) == (version is None):
        raise _fail("give exactly one of --definition FILE or --version N")
    if (execution_id is None) == (workflow is None):
        raise _fail("give an EXECUTION_ID, or --workflow W (with --since TIME) for a batch")
    settings = get_settings()

    def work() -> Any:
        new = from_file(definition) if definition is not None else None
        try:
            recorded: RecordedDefinitions | None = RecordedDefinitions.read(settings)
        except Exception as exc:  # Kafka unreachable: a file alone still replays
            if new is None:
                raise AuditInputError(f"cannot read workflow-definitions for --version "
                                      f"{version}: {exc}") from None
            recorded = None
        with _store() as store:
            wf = workflow
            if wf is None:
                assert execution_id is not None
                wf = ops.workflow_of(store, execution_id)
            if new is None:
                assert version is not None and recorded is not None
                if version not in recorded.versions(wf):
                    raise AuditInputError(
                        f"workflow {wf!r} has no published version {version} (versions: "
                        f"{recorded.versions(wf) or 'none'})")
                new = recorded.require(wf, version)
            if execution_id is not None:
                return ops.what_if(store, execution_id, new, recorded)
            since_at = ops.parse_time(since) if since is not None else None
            bar, update = _progress(f"what-if {wf}")
            with bar:
                return ops.what_if_batch(store, wf, since_at, new, recorded, update)

    result = _run(work)
    if as_json:
        _dump(result.to_dict())
    elif execution_id is not None:
        _print_what_if(result.to_dict())
    else:
        _print_summary(result.to_dict())


def _print_what_if(r: dict[str, Any]) -> None:
    c = _console()
    head = "would change" if r["changed"] else "no difference"
    c.print(f"[bold]{r['execution_id']}[/] {r['workflow_id']} v{r['recorded_version']} → "
            f"v{r['what_if_version']}: {head}"
            + (" (outcome changes)" if r["outcome_changed"] else ""))
    if r["nodes"]:
        t = Table("node", "recorded", "what-if", box=None)
        for n in r["nodes"]:
            a, b = n["recorded"], n["what_if"]
            t.add_row(n["node_id"], f"{a['status']} {_short(a['output'], 40)}",
                      f"{b['status']} {_short(b['output'], 40)}")
        c.print(t)
    for n in r["needs_call"]:
        c.print(f"[yellow]needs a new outside call:[/] {n['node_id']} attempt {n['attempt']}"
                f" ({n['reason']})")
    if r["first_divergence"]:
        fd = r["first_divergence"]
        c.print(f"first divergence at recorded seq {fd['recorded_seq']}: recorded "
                f"{_short(fd['recorded'], 70)}; what-if {_short(fd['what_if'], 70)}")
    c.print(f"outcome: recorded {_short(r['recorded_outcome'], 70)}; "
            f"what-if {_short(r['what_if_outcome'], 70)}")


def _print_summary(s: dict[str, Any]) -> None:
    c = _console()
    c.print(f"{s['total']} executions: {s['changed']} would change, {s['outcome_changed']} "
            f"with another outcome, {s['needing_calls']} need new outside calls, "
            f"{s['failed']} could not be replayed")
    if s["changed_ids"]:
        c.print("changed: " + ", ".join(s["changed_ids"]))
    for err in s["errors"][:20]:
        c.print(f"[red]{err['execution_id']}[/]: {err['error']}")


@replay_app.command("verify")
def verify(
    workflow: str | None = typer.Option(None, "--workflow", "-w", help="Only this workflow."),
    since: str | None = typer.Option(None, "--since", help="Started at or after (ISO)."),
    as_json: bool = _JSON,
) -> None:
    """Re-decide stored histories with today's code and list every execution whose recorded
    events differ (run it before deploying a new engine version). Exit 1 when any differ."""
    from flowlog.projections.audit import operations as ops
    from flowlog.projections.audit.definitions import RecordedDefinitions

    settings = get_settings()

    def work() -> dict[str, Any]:
        since_at = ops.parse_time(since) if since is not None else None
        recorded = RecordedDefinitions.read(settings)
        with _store() as store:
            bar, update = _progress("verify")
            with bar:
                return ops.verify(store, recorded, workflow, since_at, update)

    result = _run(work)
    if as_json:
        _dump(result)
    else:
        c = _console()
        c.print(f"{result['checked']} executions re-decided: {result['differ']} differ, "
                f"{len(result['unchecked'])} not checked")
        for m in result["mismatches"]:
            c.print(f"[red]{m['execution_id']}[/] differs at seq {m['seq']} ({m['input_kind']}"
                    f" {m['cause']}): recorded {_short(m['recorded'], 90)}; today "
                    f"{_short(m['decided'], 90)}")
        for u in result["unchecked"]:
            c.print(f"[yellow]{u['execution_id']}[/]: {u['reason']}")
    if result["differ"]:
        raise typer.Exit(1)


# --- flowlog lineage -------------------------------------------------------------------------

def lineage(
    item_id: str = typer.Argument(..., metavar="EVENT_ID|EXECUTION_ID",
                                  help="An execution id, an execution event id or an input id."),
    as_json: bool = _JSON,
) -> None:
    """What an event caused (causation and correlation ids, child executions, retries,
    operator commands) as a tree, and what caused it."""
    from flowlog.projections.audit import operations as ops

    def work() -> dict[str, Any]:
        with _store() as store:
            return ops.lineage(store, item_id)

    result = _run(work)
    if as_json:
        _dump(result)
        return
    c = _console()
    c.print(f"execution {result['execution_id']} (correlation {result['correlation_id']}"
            + (f", parent {result['parent_execution']}" if result["parent_execution"] else "")
            + (f", children {', '.join(result['child_executions'])}"
               if result["child_executions"] else "") + ")")
    if "caused_by" in result:
        c.print(_tree(result["caused_by"], "caused by"))
    c.print(_tree(result["caused"], "caused"))


def _tree(node: dict[str, Any], title: str) -> Tree:
    root = Tree(f"[bold]{title}[/]")

    def add(parent: Tree, n: dict[str, Any]) -> None:
        style = {"input": "cyan", "execution": "magenta"}.get(n["kind"], "")
        seq = f"#{n['seq']} " if n["seq"] is not None else ""
        label = f"{seq}{n['label']}"
        branch = parent.add(f"[{style}]{label}[/]" if style else label)
        for child in n["children"]:
            add(branch, child)

    add(root, node)
    return root


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command()(audit)
    app.command()(lineage)
    app.add_typer(replay_app, name="replay")
