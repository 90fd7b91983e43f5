"""`flowlog schemas|topics|publish`: the event contract (schemas/) from the command line."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from flowlog.settings import Settings

console = Console()
err = Console(stderr=True)

schemas_app = typer.Typer(help="The Avro schemas of the event contract.", no_args_is_help=True)
topics_app = typer.Typer(help="The topic catalog (names, partitions, retention).",
                         no_args_is_help=True)


def _settings() -> Settings:
    """Fresh settings (not the process-wide cached ones), so the environment in force counts."""
    overrides: dict[str, Any] = {}
    return Settings(**overrides)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(schemas_app, name="schemas")
    app.add_typer(topics_app, name="topics")
    app.command("publish")(publish)


# --- schemas ------------------------------------------------------------------------------------


@schemas_app.command("list")
def schemas_list() -> None:
    """Every kept schema: versions and the newest version's fingerprint."""
    from flowlog.schemas.registry import SchemaCatalog

    catalog = SchemaCatalog.load()
    table = Table("schema", "versions", "newest fingerprint (CRC-64-AVRO, LE)")
    for name in catalog.names():
        versions = catalog.versions[name]
        table.add_row(name, ", ".join(f"v{v.version}" for v in versions),
                      versions[-1].fingerprint.hex())
    console.print(table)


@schemas_app.command("check")
def schemas_check(
    candidates: Annotated[list[Path] | None, typer.Argument(
        help="Changed or new .avsc files to check against every kept version of their name."
    )] = None,
) -> None:
    """Prove the contract holds: Python types match the newest .avsc, the generated domain
    classes (aggregates/execution/_generated_*.py) match their declarations, and every kept
    version reads every other (Avro resolution, both ways). Explains each failure."""
    from flowlog.schemas.avrogen import drift
    from flowlog.schemas.compat import check_candidate, check_versions
    from flowlog.schemas.domaingen import module_drift
    from flowlog.schemas.registry import SchemaCatalog

    catalog = SchemaCatalog.load()
    failures: list[str] = []
    generated: list[str] = []  # generated domain modules that drifted
    if candidates:
        for path in candidates:
            try:
                failures += [i.explain() for i in check_candidate(path, catalog)]
            except (OSError, ValueError, KeyError) as exc:
                failures.append(f"{path}: not a readable Avro schema: {exc}. Fix: make it a "
                                "JSON record schema with a `name` and `fields`.")
    else:
        failures += drift(catalog.newest_schemas())
        failures += [i.explain() for i in check_versions(catalog)]
        generated = module_drift()
    if failures or generated:
        err.print(f"[red]{len(failures) + len(generated)} problem(s):[/red]")
        for f in [*failures, *generated]:
            err.print(f, highlight=False, markup=False, soft_wrap=True)
        if failures:
            err.print("Rules: add fields only with a default; never rename without an alias; "
                      "never remove a field that has no default; add enum symbols only where "
                      "the enum has a default. Every released version stays in schemas/avro/.")
        raise typer.Exit(1)
    checked = len(candidates) if candidates else sum(len(v) for v in catalog.versions.values())
    console.print(f"[green]ok[/green]: {checked} schema version(s) compatible, types match"
                  + ("." if candidates else ", generated domain classes up to date."))


@schemas_app.command("generate")
def schemas_generate() -> None:
    """Write the next version of every schema whose Python type changed (never edits old ones)
    and rewrite the domain's generated event and input classes
    (aggregates/execution/_generated_*.py) from the same declarations. Deterministic."""
    from flowlog.schemas.domaingen import write_modules
    from flowlog.schemas.registry import write_new_versions

    modules = write_modules()
    for path in modules:
        console.print(f"wrote {path} (generated domain classes)")
    written = write_new_versions()
    for path in written:
        console.print(f"wrote {path}")
    if not written:
        console.print("no changes: every Python type matches its newest .avsc"
                      + ("" if modules else ", every generated module is up to date"))
    else:
        console.print("now run `flowlog schemas check` to prove the new versions are compatible")


# --- topics -------------------------------------------------------------------------------------


@topics_app.command("apply")
def topics_apply(
    grow_partitions: Annotated[bool, typer.Option(
        help="Also add partitions where a topic has fewer than the catalog (re-maps keys).")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Only report what would change.")] = False,
    replication_factor: Annotated[int | None, typer.Option(
        help="Replication of new topics (default min(3, brokers)).")] = None,
) -> None:
    """Create or update every catalog topic, idempotently; report drift.

    Exit 0 when the cluster matches the catalog afterwards, 2 when drift remains."""
    from flowlog.schemas.topics import TopicCatalog, apply_topics

    settings = _settings()
    catalog = TopicCatalog.from_settings(settings)
    try:
        changes = apply_topics(catalog, settings.bootstrap_servers, dry_run=dry_run,
                               grow_partitions=grow_partitions,
                               replication_factor=replication_factor)
    except Exception as exc:
        err.print(f"[red]cannot apply topics at {settings.bootstrap_servers}:[/red] {exc}\n"
                  "Fix: start Kafka (`make up`) or set FLOWLOG_KAFKA_BOOTSTRAP.")
        raise typer.Exit(1) from exc
    if not changes:
        console.print(f"no changes: {len(catalog.topics)} topics match the catalog")
        return
    table = Table("topic", "change", "detail", "state")
    for c in changes:
        state = ("[yellow]would apply[/yellow]" if dry_run and c.kind != "partitions"
                 else "[green]applied[/green]" if c.applied else "[red]drift[/red]")
        table.add_row(c.topic, c.kind, c.detail, state)
    console.print(table)
    if any(not c.applied for c in changes):
        raise typer.Exit(2)


@topics_app.command("describe")
def topics_describe(
    offline: Annotated[bool, typer.Option(help="Only the catalog; do not ask the broker.")
                       ] = False,
) -> None:
    """The catalog, and what the cluster has for each topic."""
    from flowlog.schemas.topics import TopicCatalog, describe_cluster

    settings = _settings()
    catalog = TopicCatalog.from_settings(settings)
    states = {}
    if not offline:
        try:
            states = describe_cluster(catalog, settings.bootstrap_servers, timeout=10)
        except Exception as exc:
            err.print(f"[yellow]broker not reachable ({exc}); showing the catalog only[/yellow]")
    table = Table("topic", "key", "partitions", "retention", "cleanup", "cluster")
    for spec in catalog:
        state = states.get(spec.name)
        if state is None:
            cluster = "-"
        elif not state.exists:
            cluster = "[red]missing[/red]"
        else:
            cluster = f"{state.partitions} partitions, replication {state.replication}"
            if state.partitions != spec.partitions or any(
                    state.config.get(k) != v for k, v in spec.config.items()):
                cluster = f"[yellow]{cluster} (drift: run topics apply)[/yellow]"
        table.add_row(spec.name, spec.key, str(spec.partitions), spec.retention,
                      spec.config["cleanup.policy"], cluster)
    console.print(table)


# --- publish ------------------------------------------------------------------------------------


def publish(
    event: Annotated[str | None, typer.Argument(
        help="One event as JSON (with event_type); '-' reads it from stdin.")] = None,
    jsonl: Annotated[Path | None, typer.Option(
        "--jsonl", help="A file of events, one JSON object per line.", exists=True,
        dir_okay=False)] = None,
) -> None:
    """Publish events through the producer SDK (validated, then sent to their topic)."""
    from flowlog.schemas.errors import ContractError
    from flowlog.schemas.sdk import EventProducer

    if (event is None) == (jsonl is None):
        err.print("give one event as JSON, or --jsonl FILE. Fix: flowlog publish "
                  "'{\"event_type\": \"TriggerReceived\", ...}'")
        raise typer.Exit(2)
    settings = _settings()
    with EventProducer.from_settings(settings) as producer:
        if jsonl is not None:
            _publish_jsonl(producer, jsonl)
            return
        text = typer.get_text_stream("stdin").read() if event == "-" else str(event)
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("the event must be a JSON object")
            report = producer.publish_sync(data)
        except (ValueError, ContractError) as exc:
            err.print(f"[red]refused:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from exc
    console.print(f"sent {data.get('event_type')} to {report.topic}[{report.partition}]"
                  f"@{report.offset} key={report.key} event_id={report.event_id}")


def _publish_jsonl(producer: Any, path: Path) -> None:
    from flowlog.schemas.errors import ContractError

    lines = path.read_bytes().splitlines()
    sent: Counter[str] = Counter()
    failed: list[str] = []
    refused: list[tuple[int, str]] = []

    def done(name: str) -> Any:
        def cb(fut: Future[Any]) -> None:
            exc = fut.exception()
            if exc is None:
                sent[name] += 1
            else:
                failed.append(str(exc))
        return cb

    columns = (TextColumn("publishing"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("publish", total=len(lines))
        for lineno, line in enumerate(lines, 1):
            if line.strip():
                try:
                    data = orjson.loads(line)
                    if not isinstance(data, dict):
                        raise ValueError("not a JSON object")
                    typed = producer.prepare(data)
                    producer.publish(typed).add_done_callback(done(type(typed).__name__))
                except (ValueError, ContractError) as exc:
                    refused.append((lineno, str(exc)))
            progress.advance(task)
        left = producer.flush(60)
    table = Table("event type", "sent", title=f"{path}: summary")
    for name, n in sorted(sent.items()):
        table.add_row(name, str(n))
    table.add_row("[bold]total sent[/bold]", str(sum(sent.values())))
    table.add_row("[red]refused[/red]", str(len(refused)))
    table.add_row("[red]failed delivery[/red]", str(len(failed) + left))
    console.print(table)
    for lineno, reason in refused[:20]:
        console.print(f"line {lineno}: {reason}", highlight=False, markup=False)
    if len(refused) > 20:
        console.print(f"... and {len(refused) - 20} more refused lines")
    for reason in failed[:5]:
        console.print(f"delivery failed: {reason}", highlight=False, markup=False)
    if refused or failed or left:
        raise typer.Exit(1)
