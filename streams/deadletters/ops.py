"""Operator actions on dead letters (the `flowlog dlq` CLI): list, show, retry, discard.

Messages are taken from their queues unacknowledged (so no bridge or other operator acts
on them meanwhile), matched against a filter, and either acted on (the command sent to
Kafka and acknowledged by it, then the message acknowledged) or returned to their queue
unchanged when the connection closes. Copies of one message id count as one dead letter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from flowlog.streams.deadletters import metrics, topology
from flowlog.streams.deadletters.commands import CommandWriter, discard_record, retry_record
from flowlog.streams.deadletters.message import (
    H_REASON,
    DeadLetter,
    MalformedDeadLetter,
    parse,
)
from flowlog.streams.runtime.kafka import producer

from flowlog.settings import Settings

STAGES = ("parked", "delay", "due")


@dataclass
class Held:
    """One message taken from a queue (unacknowledged)."""

    queue: str  # due, parked, delay.<ms>
    message: AbstractIncomingMessage
    letter: DeadLetter | None
    problem: str | None = None  # why it is parked, or why it cannot be read
    copies: list[AbstractIncomingMessage] = field(default_factory=list)

    @property
    def message_id(self) -> str:
        if self.letter is not None:
            return self.letter.message_id
        return self.message.message_id or f"<no id, {self.queue} #{self.message.delivery_tag}>"

    def age_s(self, now: float) -> float:
        if self.letter is not None:
            return max(0.0, now - self.letter.dead_lettered_at.timestamp())
        ts = self.message.timestamp
        return max(0.0, now - ts.timestamp()) if ts is not None else 0.0

    def summary(self, now: float) -> dict[str, Any]:
        x = self.letter
        return {
            "message_id": self.message_id, "queue": self.queue, "copies": 1 + len(self.copies),
            "age_s": round(self.age_s(now), 1), "problem": self.problem,
            **({} if x is None else {
                "workflow_id": x.workflow_id, "node_id": x.node_id, "node_type": x.node_type,
                "execution_id": x.execution_id, "attempt": x.attempt, "rung": x.rung,
                "error_type": x.error_type, "error": x.error.get("message", "")}),
        }


@dataclass
class Filter:
    """Which dead letters an action takes; every given condition must hold."""

    message_ids: frozenset[str] = frozenset()
    workflow: str | None = None
    node_type: str | None = None
    error_type: str | None = None
    execution_id: str | None = None
    older_than_s: float | None = None
    stages: tuple[str, ...] = ("parked",)

    def takes_queue(self, label: str) -> bool:
        return label.split(".", 1)[0] in self.stages

    def matches(self, h: Held, now: float) -> bool:
        if self.message_ids and h.message_id not in self.message_ids:
            return False
        if self.older_than_s is not None and h.age_s(now) < self.older_than_s:
            return False
        x = h.letter
        wanted = (self.workflow, self.node_type, self.error_type, self.execution_id)
        if x is None:  # unreadable: only an id or the age picks it
            return not any(w is not None for w in wanted)
        return ((self.workflow is None or x.workflow_id == self.workflow)
                and (self.node_type is None or x.node_type == self.node_type)
                and (self.error_type is None or x.error_type == self.error_type)
                and (self.execution_id is None or x.execution_id == self.execution_id))


def _read(queue: str, message: AbstractIncomingMessage) -> Held:
    reason = (message.headers or {}).get(H_REASON)
    try:
        letter: DeadLetter | None = parse(message.body, message.message_id)
        problem = str(reason) if reason else None
    except MalformedDeadLetter as exc:
        letter, problem = None, str(reason) if reason else f"malformed: {exc}"
    return Held(queue, message, letter, problem)


class Session:
    """A connection that holds taken messages until it closes (then they go back)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: Any = None
        self.channel: Any = None
        self.topo: topology.Topology | None = None

    async def __aenter__(self) -> Session:
        self.connection = await topology.connect(self.settings)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.topo = await topology.declare(self.channel, self.settings)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.connection.close()  # every message not acknowledged goes back

    async def take(self, flt: Filter) -> list[Held]:
        """Every message of the filter's queues, one entry per message id, unacked."""
        assert self.topo is not None
        by_id: dict[str, Held] = {}
        out: list[Held] = []
        for label, queue in self.topo.queues().items():
            if not flt.takes_queue(label):
                continue
            declared = await self.channel.declare_queue(queue.name, passive=True)
            depth = int(declared.declaration_result.message_count or 0)
            for _ in range(depth):
                message = await declared.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    break
                held = _read(label, message)
                twin = by_id.get(held.message_id)
                if twin is not None:
                    twin.copies.append(message)
                    continue
                by_id[held.message_id] = held
                out.append(held)
        return out


def default_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


async def list_letters(settings: Settings, flt: Filter) -> list[Held]:
    """The dead letters matching ``flt`` (returned to their queues afterwards)."""
    async with Session(settings) as s:
        now = time.time()
        return [h for h in await s.take(flt) if flt.matches(h, now)]


@dataclass
class Outcome:
    matched: list[Held]
    done: int = 0
    skipped: list[Held] = field(default_factory=list)  # unreadable: nothing to command


async def act(settings: Settings, flt: Filter, *, action: str, by: str, reason: str,
              then: str = "cancel", dry_run: bool = False,
              progress: Callable[[int, int], None] | None = None, chunk: int = 200
              ) -> Outcome:
    """Retry or discard the matching dead letters, recording ``by`` and ``reason`` in the
    command each sends (`RetryNodeRequested`, or `CancelRequested`/`ResumeRequested` for a
    discard, per ``then``). ``dry_run``: only say what would be taken."""
    if action not in ("retry", "discard"):
        raise ValueError(f"action {action!r}: use retry or discard")
    async with Session(settings) as s:
        now = time.time()
        matched = [h for h in await s.take(flt) if flt.matches(h, now)]
        out = Outcome(matched)
        if dry_run or not matched:
            return out
        kafka = producer(settings)
        await kafka.start()
        try:
            writer = CommandWriter(settings, kafka)
            for i in range(0, len(matched), chunk):
                part = matched[i:i + chunk]
                commands = []
                for h in part:
                    if h.letter is None:
                        if action == "retry":
                            out.skipped.append(h)
                        continue
                    if action == "retry":
                        commands.append(("RetryNodeRequested", retry_record(
                            h.letter, requested_by=by, reason=reason)))
                    else:
                        commands.append(discard_record(h.letter, then=then, reason=reason,
                                                       requested_by=by))
                await writer.send_all(commands)  # acknowledged before the messages go
                for h in part:
                    if action == "retry" and h.letter is None:
                        continue
                    for m in (h.message, *h.copies):
                        await m.ack()
                    out.done += 1
                if action == "retry":
                    metrics.RETRIES.labels("operator").inc(len(commands))
                if progress is not None:
                    progress(min(i + chunk, len(matched)), len(matched))
        finally:
            await kafka.stop()
        return out
