"""`flowlog bench`: the engine benchmark (benchmarks/bench_engine.py) from the command line."""

from __future__ import annotations

import subprocess
import sys

import typer
from rich.console import Console

from flowlog.settings import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"


def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="About 2 minutes instead of about 8."),
    raw: bool = typer.Option(
        False, "--raw", help="The raw aiokafka ping-pong of the same shape, not the engine."),
    kafka: bool = typer.Option(
        False, "--kafka", help="Run benchmarks/bench_kafka.py (client and broker figures) first."),
) -> None:
    """Executions per second through the engine on the 5-node no-op DAG, and latency at half
    the highest sustainable rate. Other options go to bench_engine.py (see its --help:
    --rates, --duration, --latency-runs, --profile, --executors, ...). Needs `flowlog up`."""
    script = BENCHMARKS / "bench_engine.py"
    if not script.exists():
        Console(stderr=True).print(f"[red]error:[/] {script} not found: run from a checkout")
        raise typer.Exit(2)
    if kafka:
        code = subprocess.call([sys.executable, str(BENCHMARKS / "bench_kafka.py")],
                               cwd=REPO_ROOT)
        if code:
            raise typer.Exit(code)
    args = [*(["--quick"] if quick else []), *(["--target", "raw"] if raw else []), *ctx.args]
    raise typer.Exit(subprocess.call([sys.executable, str(script), *args], cwd=REPO_ROOT))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command(context_settings={"allow_extra_args": True,
                                  "ignore_unknown_options": True})(bench)
