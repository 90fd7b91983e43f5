"""The classic dispatcher's CPU per execution: its old mirror fold against `PartitionState`.

Feeds N finished executions of the 5-node DAG (examples/bench-5node.yaml; each history built
by `streams/runtime/histories.succeeding_history`, encoded as the orchestrator writes it,
one `ExecutionEventBatch` per decision) through the dispatcher's own batch handler
(`Dispatcher._handle`), in records of ``--batch`` messages, without Kafka: the producer,
committer and admission are no-op fakes. Two dispatchers:

* ``old``: the mirror fold (`_Exec`/`_Partition`), read from git at ``--old-rev`` (default
  26744ea, the last commit with it) and loaded as a module; nothing of it is kept in the
  product code;
* ``new``: today's `streams/runtime/dispatcher.py` (`PartitionState`, folded by `evolve`).

Two modes each: ``fold`` (the partition re-read before the committed offset: decode and fold
only, no task issued) and ``issue`` (also renders and "sends" the 5 node tasks). Prints
µs of CPU (process time) per execution, the median of ``--runs`` runs, and writes
benchmarks/results/dispatcher-fold.json (unless --no-write). No services needed.

    python benchmarks/bench_dispatcher_fold.py [--executions 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import types
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import yaml
from _common import median, write_results
from aiokafka import TopicPartition
from flowlog.aggregates import records
from flowlog.aggregates.definition import compile_definition, parse_definition
from flowlog.schemas.codec import Codec
from flowlog.streams.runtime.dispatcher import Dispatcher
from flowlog.streams.runtime.histories import succeeding_history

from flowlog.settings import REPO_ROOT, Settings

DAG = REPO_ROOT / "examples" / "bench-5node.yaml"
TP = TopicPartition("events", 0)


class _Producer:
    async def send(self, topic: str, value: bytes, key: bytes, partition: int,
                   headers: Any = None) -> Any:
        return asyncio.sleep(0)


class _Committer:
    async def add(self, sends: list[Any], offsets: dict[Any, int]) -> None:
        for s in sends:
            await s


class _Definitions:
    def __init__(self, d: Any) -> None:
        self.registry = SimpleNamespace(definition=lambda w, v: d)

    async def catch_up(self, within: float = 10.0) -> bool:
        return True


class _Admission:
    async def enqueue(self, entry: Any, limit: int | None) -> list[Any]:
        return []

    async def release(self, entry: Any) -> list[Any]:
        return []


def old_module(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "show", f"{rev}:streams/runtime/dispatcher.py"],
                         cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    if "class _Exec" not in src:
        sys.exit(f"{rev}:streams/runtime/dispatcher.py has no mirror fold (_Exec): pick the "
                 "commit before the dispatcher folded with PartitionState (--old-rev)")
    mod = types.ModuleType("flowlog.streams.runtime.dispatcher_old")
    exec(compile(src, f"{rev}:streams/runtime/dispatcher.py", "exec"), mod.__dict__)
    return mod


def messages(executions: int, batch: int, codec: Codec) -> tuple[Any, list[list[Any]]]:
    raw = yaml.safe_load(DAG.read_text())
    d = compile_definition(parse_definition({**raw, "version": 1}))
    start = datetime.now(UTC)
    values = []
    for _ in range(executions):
        h = succeeding_history(d, execution_id=str(uuid.uuid4()), start=start,
                               new_id=lambda: str(uuid.uuid4()),
                               step=timedelta(milliseconds=3), output={"ok": True})
        assert h.state.phase == "succeeded", h.state.phase
        values += [codec.encode("ExecutionEventBatch", records.batch_record(x.events, x.input_id))
                   for x in h.decisions]
    msgs = [SimpleNamespace(offset=i, value=v, topic="events", partition=0, headers=[],
                            timestamp=0) for i, v in enumerate(values)]
    return d, [msgs[i:i + batch] for i in range(0, len(msgs), batch)]


def one_run(kind: str, old: types.ModuleType, d: Any, chunks: list[list[Any]], codec: Codec,
            issue: bool) -> float:
    settings = Settings(topic_prefix="bench.")
    cls = old.Dispatcher if kind == "old" else Dispatcher
    disp = cls(settings, _Definitions(d), _Producer(), consumer=SimpleNamespace(),
               codec=codec, admission=_Admission())
    disp.committer = _Committer()
    resume_at = 0 if issue else 10**12
    if kind == "old":
        disp.parts[0] = old._Partition(resume_at)
    else:
        disp.assign(0, resume_at)

    async def go() -> float:
        t0 = time.process_time()
        for chunk in chunks:
            await disp._handle({TP: chunk})
        return time.process_time() - t0

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--executions", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100, help="messages per handled batch")
    ap.add_argument("--old-rev", default="26744ea")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    codec = Codec()
    old = old_module(args.old_rev)
    d, chunks = messages(args.executions, args.batch, codec)
    figures: dict[str, Any] = {"executions": args.executions, "runs": args.runs,
                               "batch": args.batch, "old_rev": args.old_rev}
    for mode in ("fold", "issue"):
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.runs):  # interleaved: both see the same machine load
            for kind in ("old", "new"):
                times[kind].append(one_run(kind, old, d, chunks, codec, mode == "issue"))
        for kind in ("old", "new"):
            us = median(times[kind]) / args.executions * 1e6
            figures[f"{mode}_{kind}_us_per_execution"] = round(us, 1)
        o, n = figures[f"{mode}_old_us_per_execution"], figures[f"{mode}_new_us_per_execution"]
        print(f"{mode:5}: old mirror fold {o:7.1f} µs/execution   PartitionState (evolve) "
              f"{n:7.1f} µs/execution   ({n - o:+.1f} µs, {n / o:.2f}×)")
    if not args.no_write:
        print("wrote", write_results("dispatcher-fold", figures))


if __name__ == "__main__":
    main()
