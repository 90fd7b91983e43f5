"""The executor role: node tasks in, results out; the work runs outside the stream.

Each task runs as its own asyncio task under a per-worker semaphore (per-node-type limits,
breakers and rate limits are the `TaskRunner`'s). An offset is committed only when every
task at or before it has published its result: the commit per partition is the lowest
offset still running (or the next one). A `kill -9` therefore redelivers every unfinished
task (faust #606 does not apply: there is no framework committing behind our back), and a
redelivered task carries the same task key, the idempotency key of its outside calls.
Within one process, a task key that already finished re-publishes its result instead of
running again.

Results are produced without waiting for each ack: a finished task hands its result to
the producer and frees its slot; the poll loop gathers the acks of every result handed
over so far (one wait per poll, not one per task), and only then marks those offsets done.
Commits follow at most every `COMMIT_INTERVAL_S` (and at once on revocation): a commit
is a broker round trip per poll otherwise, and a later commit only means more redelivery
after a crash, never less.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from flowlog.aggregates import records
from flowlog.schemas.events import NodeTaskIssued
from flowlog.schemas.guard import DecodeGuard
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.commits import commit_offsets
from flowlog.streams.runtime.kafka import catalog
from flowlog.streams.runtime.ports import Consumer, Producer

from flowlog.observability import hooks
from flowlog.settings import Settings

log = logging.getLogger(__name__)
COMMIT_INTERVAL_S = 0.1


class _Unacked:
    """A result handed to the producer whose ack the loop has not seen yet."""

    __slots__ = ("attempt", "execution_id", "fut", "offset", "part", "partition", "status",
                 "task_key", "value")

    def __init__(self, part: _Partition, partition: int, offset: int, task_key: str,
                 execution_id: str, value: bytes, status: str | None, fut: Any) -> None:
        self.part = part
        self.partition = partition
        self.offset = offset
        self.task_key = task_key
        self.execution_id = execution_id
        self.value = value
        self.status = status  # None: a re-published result
        self.fut = fut
        self.attempt = 0


class Runner(Protocol):
    async def run(self, task: NodeTaskIssued) -> Any: ...
    async def aclose(self) -> None: ...


class _Partition:
    def __init__(self) -> None:
        self.running: set[int] = set()
        self.next: int | None = None  # the offset after the last one read
        self.committed: int | None = None

    def safe(self) -> int | None:
        return policy.safe_offset(self.running, self.next)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: Executor) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # give running tasks of these partitions a moment to finish, then commit what is safe
        owner = self.owner
        loop = asyncio.get_running_loop()
        deadline = loop.time() + owner.revoke_grace_s
        while True:
            await owner.settle()  # the acks of results already handed to the producer
            if loop.time() >= deadline or not any(
                    owner.parts.get(tp.partition, _Partition()).running for tp in revoked):
                break
            await asyncio.sleep(0.05)
        await owner.commit([tp for tp in revoked if tp.partition in owner.parts], force=True)
        for tp in revoked:
            owner.parts.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        for tp in assigned:
            self.owner.parts[tp.partition] = _Partition()


class Executor:
    """Built by the composition root (`compose.executor`): ``consumer`` a member of the
    `executor` group, ``producer`` the process's idempotent producer, ``runner`` the task
    runner (tools, webhooks, agents; its breakers, rate limits and secrets), ``guard`` the
    decode guard (validating) with its quarantine."""

    def __init__(self, settings: Settings, producer: Producer, runner: Runner, *,
                 consumer: Consumer, guard: DecodeGuard) -> None:
        self.settings = settings
        self.producer = producer
        self.runner = runner
        self.guard = guard
        self.codec = self.guard.codec
        cat = catalog(settings)
        self.tasks_topic = cat.name("node-tasks")
        self.results_topic = cat.name("node-results")
        self.parts: dict[int, _Partition] = {}
        self.sem = asyncio.Semaphore(settings.executor_max_inflight)
        self.slot_freed = asyncio.Event()
        self.finished: OrderedDict[str, bytes] = OrderedDict()  # task key -> result record
        self.running: dict[str, asyncio.Task[None]] = {}
        self.stats: Counter[str] = Counter()
        self.revoke_grace_s = 5.0
        self.fatal: BaseException | None = None  # a result that could not be published
        self.unacked: list[_Unacked] = []
        self.last_commit = 0.0
        self.consumer = consumer
        hooks.watch_inflight(lambda: len(self.running))

    async def run(self) -> None:
        self.consumer.subscribe([self.tasks_topic], listener=_Listener(self))
        await self.consumer.start()
        try:
            while True:
                if self.fatal is not None:  # stop: a restart redelivers the unreported task
                    raise RuntimeError("executor: a result could not be published") from (
                        self.fatal)
                free = self._admit_window()
                if free == 0:
                    # Every slot busy: wait for one to free up (not for a poll of paused
                    # partitions, which would sleep its whole timeout), but poll at least
                    # once a second so the group keeps us.
                    self.slot_freed.clear()
                    try:
                        await asyncio.wait_for(self.slot_freed.wait(), timeout=1.0)
                    except TimeoutError:
                        pass
                    free = self._admit_window()
                batches = await self.consumer.getmany(timeout_ms=200 if free else 0,
                                                      max_records=max(free, 1))
                for tp, msgs in batches.items():
                    part = self.parts.get(tp.partition)
                    if part is None:
                        continue
                    hooks.records_in("executor", tp.topic, len(msgs))
                    for msg in msgs:
                        await self._one(tp, part, msg)
                await self.settle()
                await self.commit([TopicPartition(self.tasks_topic, p) for p in self.parts])
        finally:
            for task in list(self.running.values()):
                task.cancel()
            await self.consumer.stop()

    def _admit_window(self) -> int:
        """How many tasks the next poll may return: the free slots.

        With every slot busy (0) the assigned partitions are paused rather than the loop
        blocking on the semaphore: polling goes on (an empty poll keeps the consumer in its
        group, so tasks longer than `max.poll.interval.ms` do not cause a rebalance) and
        nothing is fetched until a slot frees up.
        """
        free = policy.admit_window(self.settings.executor_max_inflight, len(self.running))
        assigned = self.consumer.assignment()
        if free == 0:
            if assigned:
                self.consumer.pause(*assigned)
            return 0
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)
        return free

    async def settle(self) -> None:
        """Gather the acks of the results handed over so far; mark their offsets done.

        A result whose send failed is sent again (`policy.resend_delay`: twice, after 0.5
        and 1 s); after that the role stops (`fatal`) with the offset uncommitted, so a
        restart runs the task again.
        """
        if not self.unacked:
            return
        batch, self.unacked = self.unacked, []
        acks = await asyncio.gather(*(u.fut for u in batch), return_exceptions=True)
        for u, ack in zip(batch, acks, strict=True):
            if isinstance(ack, BaseException):
                if isinstance(ack, asyncio.CancelledError):
                    raise ack
                delay = policy.resend_delay(u.attempt)
                if delay is None:
                    log.error("executor: the result of task %s could not be published: %s",
                              u.task_key, ack)
                    self.stats["report_failed"] += 1
                    self.fatal = ack
                    continue
                u.attempt += 1
                await asyncio.sleep(delay)
                try:
                    u.fut = await self._send(u.partition, u.execution_id, u.value)
                except Exception as exc:
                    u.fut = asyncio.get_running_loop().create_future()
                    u.fut.set_exception(exc)
                self.unacked.append(u)
                continue
            if u.status is not None:
                self.stats[f"task_{u.status}"] += 1
            u.part.running.discard(u.offset)  # only now may the offset be committed

    async def _send(self, partition: int, execution_id: str, value: bytes,
                    headers: list[tuple[str, bytes]] | None = None) -> Any:
        """Hand one result to the producer; returns the future of its ack."""
        hooks.records_out("executor", self.results_topic)
        return await self.producer.send(self.results_topic, value=value,
                                        key=execution_id.encode(), partition=partition,
                                        headers=headers)

    async def commit(self, tps: list[TopicPartition], force: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        if not policy.commit_due(now, self.last_commit, COMMIT_INTERVAL_S, force):
            return
        offsets: dict[TopicPartition, int] = {}
        for tp in tps:
            part = self.parts.get(tp.partition)
            safe = part.safe() if part else None
            if part is not None and safe is not None and safe != part.committed:
                offsets[tp] = safe
        if offsets:
            self.last_commit = now
            # as the `Committer` does: a lost partition is re-run by its new owner (task keys
            # make the re-runs the same outside calls); a commit not made (coordinator moved,
            # connection dropped) is made again with the next commit; neither ends the role
            if await commit_offsets(self.consumer, offsets, "executor") != "committed":
                return
            for tp, offset in offsets.items():
                part = self.parts.get(tp.partition)
                if part is not None:
                    part.committed = offset

    async def _one(self, tp: TopicPartition, part: _Partition, msg: Any) -> None:
        part.next = msg.offset + 1
        accepted = self.guard.decode(msg)
        task = accepted.event if accepted is not None else None
        if not isinstance(task, NodeTaskIssued):
            task = None
        cached = self.finished.get(task.task_key) if task is not None else None
        action = policy.task_action(task is not None, cached is not None,
                                    task is not None and task.task_key in self.running)
        if action == "quarantine" or task is None:
            if accepted is not None:
                self.guard.quarantine(msg, records.WireError(f"{accepted.name} is not a node task"))
            await asyncio.to_thread(self.guard.flush)
            self.stats["quarantined"] += 1
            return
        if action == "republish" and cached is not None:  # ran here: same result, no re-run
            self.stats["republished"] += 1
            part.running.add(msg.offset)  # until the re-published result is acknowledged
            fut = await self._send(tp.partition, task.execution_id, cached)
            self.unacked.append(_Unacked(part, tp.partition, msg.offset, task.task_key,
                                         task.execution_id, cached, None, fut))
            return
        if action == "already_running":
            self.stats["already_running"] += 1
            return  # the earlier copy is still running and holds back the commit
        await self.sem.acquire()
        part.running.add(msg.offset)
        # the task inherits this record's trace hop and log context, and ends the hop
        scope = hooks.enter("executor task", msg, attributes={
            "flowlog.node_id": task.node_id, "flowlog.node_type": task.node_type})
        hooks.describe(task.workflow_id, task.tenant)
        self.running[task.task_key] = asyncio.create_task(
            self._execute(tp.partition, part, msg.offset, task), name=task.task_key)
        hooks.leave(scope, end=False)

    async def _execute(self, partition: int, part: _Partition, offset: int,
                       task: NodeTaskIssued) -> None:
        started = time.perf_counter()
        try:
            outcome = await self.runner.run(task)
            hooks.task_done(task.node_type, outcome.status, time.perf_counter() - started,
                            outcome.model_calls)
            log.debug("executor: task %s %s in %.3fs", task.task_key, outcome.status,
                      time.perf_counter() - started)
            record = records.result_record(
                task, status=outcome.status, output=outcome.output, error=outcome.error,
                started_at=outcome.started_at, finished_at=outcome.finished_at,
                model_calls=outcome.model_calls, tool_calls=outcome.tool_calls)
            value = self.codec.encode("NodeResultReported", record)
            fut = await self._send(partition, task.execution_id, value, hooks.headers())
            # the loop gathers the ack (`settle`), then the offset may be committed
            self.unacked.append(_Unacked(part, partition, offset, task.task_key,
                                         task.execution_id, value, outcome.status, fut))
            self.finished[task.task_key] = value
            while len(self.finished) > self.settings.executor_result_cache:
                self.finished.popitem(last=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # not handed over: the offset stays uncommitted and the role stops, so a restart
            # (or another executor) runs the task again with the same task key
            log.exception("executor: task %s could not be reported", task.task_key)
            self.stats["report_failed"] += 1
            self.fatal = exc
        finally:
            hooks.end_current()
            self.running.pop(task.task_key, None)
            self.sem.release()
            self.slot_freed.set()
