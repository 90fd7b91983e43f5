"""The Kafka commands made from dead letters (retry, and an operator's discard), with
event ids derived from the message id: a redelivered message makes the same command."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from flowlog.aggregates import records
from flowlog.schemas.codec import Codec
from flowlog.streams.deadletters.message import DeadLetter, discard_event_id, retry_event_id
from flowlog.streams.runtime.kafka import catalog, partition_of

from flowlog.settings import Settings

#: What an operator's discard sends besides removing the dead letter.
DISCARD_THEN = {"cancel": "CancelRequested", "resume": "ResumeRequested"}


def _envelope(name: str, letter: DeadLetter, event_id: str, now: datetime) -> dict[str, Any]:
    return records.envelope(
        name, event_id=event_id, execution_id=letter.execution_id,
        workflow_id=letter.workflow_id, workflow_version=letter.workflow_version,
        occurred_at=now, correlation_id=letter.correlation_id,
        causation_id=letter.dead_letter_event_id, tenant=letter.tenant)


def retry_record(letter: DeadLetter, *, reason: str, requested_by: str,
                 now: datetime | None = None) -> dict[str, Any]:
    """The `RetryNodeRequested` record of one dead letter."""
    now = now or datetime.now(UTC)
    return {**_envelope("RetryNodeRequested", letter, retry_event_id(letter.message_id), now),
            "node_id": letter.node_id, "reason": reason, "requested_by": requested_by}


def discard_record(letter: DeadLetter, *, then: str, reason: str, requested_by: str,
                   now: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """(event name, record) of the command a discard sends: cancel the execution, or resume
    past the node (it ends failed, output null)."""
    name = DISCARD_THEN[then]
    now = now or datetime.now(UTC)
    text = f"dead letter {letter.message_id} discarded: {reason}"
    return name, {**_envelope(name, letter, discard_event_id(letter.message_id), now),
                  "reason": text, "requested_by": requested_by}


#: The Kafka headers the command gateway sets and the audit trail reads (who and why).
ACTOR_HEADER, REASON_HEADER = "flowlog-actor", "flowlog-reason"
#: `requested_by` of the bridge's ladder retries (an actor ``process:deadletters``).
LADDER = "deadletters"


def audit_headers(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    """``flowlog-actor`` (``user:<name>``, or ``process:deadletters`` for the ladder) and
    ``flowlog-reason``, as the command gateway writes them for the audit trail."""
    by = str(record.get("requested_by") or "unknown")
    actor = f"process:{by}" if by == LADDER else f"user:{by}"
    return [(ACTOR_HEADER, actor.encode()),
            (REASON_HEADER, str(record.get("reason") or "").encode())]


class CommandWriter:
    """Encodes and sends commands to the commands topic, keyed and partitioned by
    execution id; `send_all` returns once the broker acknowledged every one."""

    def __init__(self, settings: Settings, producer: Any, codec: Codec | None = None) -> None:
        cat = catalog(settings)
        self.topic = cat.name("commands")
        self.partitions = cat.topics["commands"].partitions
        self.producer = producer
        self.codec = codec or Codec.from_settings(settings)

    async def send_all(self, commands: list[tuple[str, dict[str, Any]]]) -> None:
        futures = []
        for name, record in commands:
            value = self.codec.encode(name, record)
            eid = record["execution_id"]
            futures.append(await self.producer.send(
                self.topic, value=value, key=eid.encode(),
                partition=partition_of(eid, self.partitions), headers=audit_headers(record)))
        if futures:
            await asyncio.gather(*futures)
