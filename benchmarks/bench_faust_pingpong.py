"""The same 5-node ping-pong as `bench_raw_pingpong.py`, with each role a Faust agent.

    python benchmarks/bench_engine.py --target faust [options]

Same topics, same record formats, same records per execution (17 written, 17 read) as
the raw aiokafka ping-pong, so the two figures read side by side: the difference is what
Faust (faust-streaming, concurrency=1 agents, memory store, producer linger 2 ms,
acks=all) costs per record on this machine. This is the measurement behind running the
engine's roles on aiokafka rather than as Faust agents (docs/engine.md, docs/benchmarks.md).

Each role is a Faust app of its own whose id is the role's consumer group
(`<prefix>orchestrator`, `<prefix>dispatcher`, `<prefix>executor`), so the harness
watches the same groups as for the raw target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_raw_pingpong import ROLE_GROUP, RawTarget, orchestrate


def build_app(bootstrap: str, prefix: str, role: str) -> Any:
    import faust

    group = ROLE_GROUP[role]
    app = faust.App(
        prefix + group, broker=f"kafka://{bootstrap}", store="memory://",
        datadir=tempfile.mkdtemp(prefix=f"faustpp-{group}-"), value_serializer="raw",
        key_serializer="raw", web_enabled=False, topic_allow_declare=False,
        consumer_auto_offset_reset="earliest", producer_linger_ms=2, producer_acks=-1,
        producer_max_batch_size=1_048_576,
    )
    triggers, results = app.topic(prefix + "triggers"), app.topic(prefix + "results")
    events, tasks = app.topic(prefix + "events"), app.topic(prefix + "tasks")
    state: dict[str, tuple[set[str], set[str]]] = {}

    if role == "orchestrator":

        @app.agent(app.topic(prefix + "triggers", prefix + "results"), concurrency=1)
        async def orchestrator(stream: Any) -> None:
            async for event in stream.events():
                out = orchestrate(state, *event.value.split(b"|", 2))
                if out is None:
                    continue
                await events.send(key=event.key, value=out,
                                  partition=event.message.partition)

    elif role == "dispatcher":

        @app.agent(events, concurrency=1)
        async def dispatcher(stream: Any) -> None:
            async for event in stream.events():
                kind, eid, arg = event.value.split(b"|", 2)
                if kind == b"S" and arg:
                    for node in arg.split(b","):
                        await tasks.send(key=event.key, value=b"K|" + eid + b"|" + node,
                                         partition=event.message.partition)

    else:

        @app.agent(tasks, concurrency=1)
        async def executor(stream: Any) -> None:
            async for event in stream.events():
                _, eid, node = event.value.split(b"|", 2)
                await results.send(key=event.key, value=b"R|" + eid + b"|" + node,
                                   partition=event.message.partition)

    del triggers  # declared for symmetry with the raw target; subscribed via the pair
    return app


class FaustTarget(RawTarget):
    """What `bench_engine.py` needs to drive the Faust ping-pong."""

    name = "faust"
    description = "Faust agents ping-pong of the same 5-node shape (no Avro, no domain)"

    def worker_argv(self, settings: Any, role: str) -> list[str]:
        if role == "all":
            raise SystemExit("the Faust ping-pong runs one role per process (a Faust app "
                             "is one consumer group): use the split layout")
        return [sys.executable, str(Path(__file__).resolve()), "worker", role,
                "--prefix", settings.topic_prefix, "--bootstrap", settings.bootstrap_servers]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        ap = argparse.ArgumentParser(prog="bench_faust_pingpong.py worker")
        ap.add_argument("role", choices=["orchestrator", "dispatcher", "executor"])
        ap.add_argument("--prefix", required=True)
        ap.add_argument("--bootstrap", required=True)
        a = ap.parse_args(sys.argv[2:])
        from faust import Worker

        app = build_app(a.bootstrap, a.prefix, a.role)
        Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_engine

    bench_engine.main(["--target", "faust", *sys.argv[1:]])


if __name__ == "__main__":
    main()
