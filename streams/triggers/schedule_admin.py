"""What ``flowlog schedules list | next | backfill`` do (also used by tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowlog.schemas.sdk import EventProducer
from flowlog.streams.triggers.scheduler import (
    ScheduleRow,
    connect,
    load_schedules,
    record,
    spec_of,
    trigger_for,
)
from flowlog.streams.triggers.slots import ScheduleSpec, SlotDecision, backfill_plan, next_slots

from flowlog.settings import Settings


@dataclass(frozen=True, slots=True)
class ScheduleView:
    row: ScheduleRow
    spec: ScheduleSpec
    upcoming: list[datetime]
    counts: dict[str, int]


async def list_schedules(settings: Settings, now: datetime, *, workflow_id: str | None = None,
                         n: int = 1, schema: str | None = None) -> list[ScheduleView]:
    conn = await connect(settings, schema)
    try:
        out = []
        for row in await load_schedules(conn, workflow_id, active_only=False):
            cur = await conn.execute(
                "SELECT state, count(*) FROM schedule_slots WHERE workflow_id = %s AND "
                "trigger_index = %s GROUP BY state", (row.workflow_id, row.trigger_index))
            counts = {state: int(c) for state, c in await cur.fetchall()}
            spec = spec_of(row, settings)
            out.append(ScheduleView(row, spec, next_slots(spec, now, n) if row.active else [],
                                    counts))
        return out
    finally:
        await conn.close()


async def backfill(settings: Settings, workflow_id: str, start: datetime, end: datetime, *,
                   dry_run: bool, trigger_index: int | None = None, schema: str | None = None,
                   progress: Callable[[int], Any] | None = None
                   ) -> list[tuple[ScheduleRow, SlotDecision]]:
    """The slots of ``[start, end]`` (each schedule trigger of the workflow, or one); unless
    ``dry_run``, fire them: the same list, published with their slot ids (a slot that
    already fired names the same execution, so nothing runs twice) and recorded in the
    ledger. Raises LookupError when the workflow has no schedule."""
    conn = await connect(settings, schema)
    try:
        rows = [r for r in await load_schedules(conn, workflow_id, active_only=False)
                if trigger_index is None or r.trigger_index == trigger_index]
        if not rows:
            raise LookupError(f"{workflow_id} has no schedule trigger known to the scheduler: "
                              "apply and activate it, and run `flowlog worker scheduler`")
        plan = [(row, d) for row in rows
                for d in backfill_plan(spec_of(row, settings), start, end)]
        if dry_run:
            return plan
        with EventProducer.from_settings(settings) as producer:
            for row in rows:
                spec = spec_of(row, settings)
                mine = [d for r, d in plan if r is row]
                fire = [trigger_for(row, spec, d.at) for d in mine if d.state == "fired"]
                for i in range(0, len(fire), 500):
                    summary = producer.publish_many(fire[i:i + 500])
                    if not summary.ok:
                        raise RuntimeError(f"publishing the backfill failed: {summary}")
                    if progress is not None:
                        progress(len(fire[i:i + 500]))
                await record(conn, row, None, mine, None, spec, None)
        return plan
    finally:
        await conn.close()
