"""Schedule slots (pure: no I/O, time passed in): which instants a cron trigger fires at,
and what becomes of each slot at a given moment.

Wall-clock rules across DST, the ones ``java.time`` uses:
* a local time that does not exist (spring forward) fires shifted forward by the gap's
  length (02:30 in a 02:00→03:00 gap fires at 03:30 local);
* a local time that occurs twice (fall back) fires once, at its first occurrence;
* two local times that land on the same instant fire once.

A slot's id, ``schedule:<trigger index>:<UTC instant>``, is the trigger's dedup key, so its
execution id is derived: a slot fired twice (two schedulers, a retry, a backfill) is one
execution.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from flowlog.aggregates.definition.trigger_checks import parse_instant
from flowlog.schemas.ids import execution_id_for

#: A slot later than this when it is decided was missed (the scheduler was down).
LATE_AFTER = timedelta(seconds=60)
#: Slots one decision looks at, at most (a long outage is worked off over several ticks).
MAX_SLOTS_PER_DECISION = 10_000
MISSED_POLICIES = ("skip", "run_once", "run_all")


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A schedule trigger's config, parsed."""

    workflow_id: str
    trigger_index: int
    cron: str
    tz: ZoneInfo
    window: tuple[time, time] | None = None
    start: datetime | None = None
    end: datetime | None = None
    missed: str = "skip"
    max_catchup: int = 100
    input: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, workflow_id: str, index: int, config: dict[str, Any],
                    max_catchup: int = 100) -> ScheduleSpec:
        tz = ZoneInfo(config.get("timezone") or "UTC")
        window = None
        if config.get("window"):
            w = config["window"]
            window = (time.fromisoformat(w["from"]), time.fromisoformat(w["to"]))
        raw_input = config.get("input")
        return cls(
            workflow_id=workflow_id, trigger_index=index, cron=config["cron"], tz=tz,
            window=window, start=_bound(config.get("start"), tz),
            end=_bound(config.get("end"), tz, end_of_day=True),
            missed=config.get("missed") or "skip",
            max_catchup=int(config.get("max_catchup") or max_catchup),
            input=dict(raw_input) if isinstance(raw_input, dict) else {})

    def slot_id(self, at: datetime) -> str:
        return f"schedule:{self.trigger_index}:{at.astimezone(UTC).isoformat()}"

    def execution_id(self, at: datetime) -> str:
        return execution_id_for(self.workflow_id, self.slot_id(at))

    def in_window(self, at: datetime) -> bool:
        if self.window is None:
            return True
        local = at.astimezone(self.tz).time()
        lo, hi = self.window
        return lo <= local < hi if lo < hi else (local >= lo or local < hi)


def _bound(value: object, tz: ZoneInfo, end_of_day: bool = False) -> datetime | None:
    """start/end as an instant; a date alone is local midnight, or, for an end, the next
    midnight (the day is included). Slots are in ``[start, end)``."""
    parsed = parse_instant(value) if value is not None else None
    if parsed is None:
        return None
    if not isinstance(parsed, datetime):
        parsed = datetime.combine(parsed + timedelta(days=1 if end_of_day else 0), time(0))
    return parsed if parsed.tzinfo is not None else localize(parsed, tz)


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time in ``tz`` → the instant it names, in UTC (the module doc's rules).

    ``fold=0`` does both: of two occurrences it is the first, and a time in a gap is read
    with the offset before the gap, i.e. shifted forward by the gap's length.
    """
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def slots(spec: ScheduleSpec, after: datetime, until: datetime,
          limit: int = MAX_SLOTS_PER_DECISION) -> list[datetime]:
    """Slot instants (UTC) in ``(after, until]`` and ``[start, end)``, at most ``limit``."""
    lo = max(after, spec.start - timedelta(microseconds=1)) if spec.start else after
    out: list[datetime] = []
    for at in _instants(spec, lo):
        if at > until or (spec.end is not None and at >= spec.end) or len(out) >= limit:
            break
        if at > lo and (not out or at > out[-1]):
            out.append(at)
    return out


def _instants(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    # Walk wall-clock times (naive, in the zone) from a little before `after`, so a time
    # shifted forward by a gap that lands after `after` is not skipped.
    local = after.astimezone(spec.tz).replace(tzinfo=None) - timedelta(hours=3)
    it = croniter(spec.cron, local)
    last: datetime | None = None
    while True:
        naive = it.get_next(datetime)
        at = localize(naive, spec.tz)
        if last is not None and at <= last:
            continue  # the repeated hour of a fall back, or a gap collision
        last = at
        if at > after:
            yield at


@dataclass(frozen=True, slots=True)
class SlotDecision:
    at: datetime
    state: str  # fired, missed, skipped
    reason: str = ""


def decide(spec: ScheduleSpec, cursor: datetime, now: datetime,
           limit: int = MAX_SLOTS_PER_DECISION) -> tuple[list[SlotDecision], datetime]:
    """What becomes of the slots in ``(cursor, now]``; returns them and the new cursor.

    On time (no later than ``LATE_AFTER``): fired, or skipped outside the window. Late
    (the scheduler was down): by the missed policy: ``skip`` → missed; ``run_once`` → the
    newest late slot fires, older ones missed; ``run_all`` → the newest ``max_catchup``
    fire, older ones missed.
    """
    due = slots(spec, cursor, now, limit)
    new_cursor = due[-1] if len(due) >= limit else now
    late = [at for at in due if now - at > LATE_AFTER and spec.in_window(at)]
    catch_up: set[datetime] = set()
    if spec.missed == "run_once" and late:
        catch_up = {late[-1]}
    elif spec.missed == "run_all":
        catch_up = set(late[-spec.max_catchup:])
    out = []
    for at in due:
        if not spec.in_window(at):
            out.append(SlotDecision(at, "skipped", "outside the window"))
        elif now - at <= LATE_AFTER:
            out.append(SlotDecision(at, "fired"))
        elif at in catch_up:
            out.append(SlotDecision(at, "fired", f"late, missed: {spec.missed}"))
        else:
            out.append(SlotDecision(at, "missed", f"scheduler was down (missed: {spec.missed}"
                                                  + (f", max_catchup {spec.max_catchup}"
                                                     if spec.missed == "run_all" else "")
                                                  + ")"))
    return out, new_cursor


def next_slots(spec: ScheduleSpec, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` slot instants after ``after`` (window-skipped ones included)."""
    found: list[datetime] = []
    for at in _instants(spec, after):
        if spec.end is not None and at >= spec.end:
            break
        if spec.start is not None and at < spec.start:
            continue
        found.append(at)
        if len(found) >= n:
            break
    return found


def backfill_plan(spec: ScheduleSpec, start: datetime, end: datetime,
                  limit: int = MAX_SLOTS_PER_DECISION) -> list[SlotDecision]:
    """The slots in ``[start, end]`` a backfill fires (window-skipped ones marked)."""
    return [SlotDecision(at, "fired" if spec.in_window(at) else "skipped",
                         "backfill" if spec.in_window(at) else "outside the window")
            for at in slots(spec, start - timedelta(microseconds=1), end, limit)]


def as_utc(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(0), UTC)
