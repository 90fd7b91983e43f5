"""The `flowlog` command line: one typer app, one sub-app per concern (each in its module)."""

from __future__ import annotations

import typer

from flowlog.cli import audit as audit_cli  # audit and replay
from flowlog.cli import auth as auth_cli  # ingress
from flowlog.cli import bench, contract, db, engine, projections, services, workflows
from flowlog.cli import dlq as dlq_cli  # dead letters
from flowlog.cli import search_attributes as search_attributes_cli  # query API
from flowlog.cli import triggers as triggers_cli  # ingress

app = typer.Typer(
    name="flowlog",
    help="flowlog: an event-sourced engine for AI-agent workflows on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
services.register(app)
contract.register(app)
workflows.register(app)
engine.register(app)
bench.register(app)
db.register(app)
projections.register(app)
auth_cli.register(app)
triggers_cli.register(app)
audit_cli.register(app)
dlq_cli.register(app)
search_attributes_cli.register(app)


def main() -> None:
    app()
