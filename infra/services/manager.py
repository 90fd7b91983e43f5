"""`python -m flowlog.infra.services.manager up|down|status [SERVICE...]`.

`up` is idempotent: it installs what is missing, starts what is stopped and waits until
each service answers; if one fails, the services this run started are stopped again, so
nothing half-started is left behind.
"""

from __future__ import annotations

import sys
import time

from flowlog.infra.services.base import Service, ServiceError
from flowlog.infra.services.kafka import Kafka
from flowlog.infra.services.postgres import Postgres
from flowlog.infra.services.rabbitmq import RabbitMQ
from flowlog.infra.services.redis import Redis
from rich.console import Console
from rich.table import Table

from flowlog.settings import Settings, get_settings

ALL = (Kafka, Postgres, Redis, RabbitMQ)
console = Console(stderr=True)


def services(settings: Settings, names: list[str] | None = None) -> list[Service]:
    chosen = [cls(settings) for cls in ALL]
    if names:
        unknown = set(names) - {s.name for s in chosen}
        if unknown:
            raise ServiceError(
                f"unknown service {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(s.name for s in chosen)}"
            )
        chosen = [s for s in chosen if s.name in names]
    return chosen


def up(settings: Settings, names: list[str] | None = None) -> dict[str, str]:
    started: list[Service] = []
    results: dict[str, str] = {}
    for svc in services(settings, names):
        t0 = time.monotonic()
        try:
            outcome = svc.up()
        except ServiceError:
            for other in reversed(started):
                other.down()
            raise
        results[svc.name] = outcome
        if outcome == "started":
            started.append(svc)
        console.print(f"[green]✓[/] {svc.name:<9} {outcome:<8} port {svc.port}  "
                      f"({time.monotonic() - t0:.1f}s)")
    return results


def down(settings: Settings, names: list[str] | None = None) -> None:
    for svc in reversed(services(settings, names)):
        console.print(f"  {svc.name:<9} {svc.down()}")


def status(settings: Settings, names: list[str] | None = None) -> bool:
    table = Table("service", "port", "pid", "health", "detail")
    ok = True
    for svc in services(settings, names):
        st = svc.status()
        ok &= st.healthy
        table.add_row(st.name, str(st.port), str(st.pid or "-"),
                      "[green]healthy[/]" if st.healthy else "[red]down[/]", st.detail)
    Console().print(table)
    return ok


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in {"up", "down", "status"}:
        console.print("usage: manager up|down|status [kafka|postgres|redis|rabbitmq ...]")
        return 2
    settings = get_settings()
    try:
        if args[0] == "up":
            up(settings, args[1:])
        elif args[0] == "down":
            down(settings, args[1:])
        else:
            return 0 if status(settings, args[1:]) else 1
    except ServiceError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
