"""CLI commands for workflow definitions: `flowlog workflows validate FILE`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.console import Console

from flowlog.aggregates.definition.parse import parse_text
from flowlog.aggregates.definition.tool_checks import check_tools
from flowlog.aggregates.definition.validate import validate_definition
from flowlog.aggregates.errors import DefinitionParseError

workflows_app = typer.Typer(help="Workflow definitions.", no_args_is_help=True)


@workflows_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="A workflow definition (.yaml, .yml or .json)."),
    allow_missing_tools: bool = typer.Option(
        False, "--allow-missing-tools",
        help="Accept tools not installed here (only some executor deployments have them)."),
) -> None:
    """Validate a definition: print every error with its path (exit 1), or a summary (exit 0).

    Tool nodes are checked against the tools installed here (entry points and
    FLOWLOG_TOOL_MODULES): the tool exists, and its input has the fields the tool needs."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        raw = parse_text(file.read_text(encoding="utf-8"), filename=file.name)
    except OSError as exc:
        err.print(f"[red]error[/red]: cannot read {file}: {exc.strerror}")
        raise typer.Exit(2) from None
    except DefinitionParseError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None
    spec, issues = validate_definition(raw)
    if spec is not None:
        from flowlog.settings import get_settings
        from flowlog.streams.runtime.tools import tool_catalog

        issues = check_tools(spec, tool_catalog(get_settings()),
                             allow_missing=allow_missing_tools)
    if spec is None or issues:
        err.print(f"[red]{file}: {len(issues)} error(s)[/red]")
        for issue in issues:
            err.print(f"  {issue.render()}", markup=False)
        raise typer.Exit(1)
    kinds = Counter(node.type for node in spec.nodes.values())
    triggers = ", ".join(t.type for t in spec.triggers)
    node_summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    out.print(f"[green]ok[/green] {file}: workflow {spec.id!r} v{spec.version}", markup=True)
    out.print(f"  nodes: {len(spec.nodes)} ({node_summary})", markup=False)
    out.print(f"  triggers: {len(spec.triggers)} ({triggers})", markup=False)


@workflows_app.command("apply")
def apply(
    files: list[Path] = typer.Argument(..., help="Definition files (.yaml, .yml or .json)."),
    draft: bool = typer.Option(False, "--draft", help="Publish without activating."),
    allow_missing_tools: bool = typer.Option(
        False, "--allow-missing-tools",
        help="Accept tools not installed here (only some executor deployments have them)."),
) -> None:
    """Validate, then publish each definition (a new version only when it changed) and
    activate it unless --draft. Exit 1 on the first invalid file (nothing of it published)."""
    from flowlog.aggregates.errors import DefinitionInvalid, InvalidTransition
    from flowlog.settings import get_settings
    from flowlog.streams.runtime.tools import apply_definition

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for file in files:
        try:
            out.print(apply_definition(get_settings(), file, draft=draft,
                                       allow_missing_tools=allow_missing_tools), markup=False)
        except OSError as exc:
            err.print(f"[red]error[/red]: cannot read {file}: {exc.strerror}")
            raise typer.Exit(2) from None
        except DefinitionParseError as exc:
            err.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(1) from None
        except InvalidTransition as exc:
            err.print(f"[red]error[/red]: {file}: {exc}", markup=True)
            raise typer.Exit(1) from None
        except DefinitionInvalid as exc:
            err.print(f"[red]{file}: {len(exc.issues)} error(s)[/red]")
            for issue in exc.issues:
                err.print(f"  {issue.render()}", markup=False)
            raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(workflows_app, name="workflows")
