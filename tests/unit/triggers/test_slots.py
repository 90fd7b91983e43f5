"""Schedule slots: DST in Europe/Paris and America/New_York, windows, bounds, missed runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flowlog.streams.triggers.slots import (
    LATE_AFTER,
    ScheduleSpec,
    backfill_plan,
    decide,
    next_slots,
    slots,
)


def spec(cron: str, tz: str = "Europe/Paris", **config: Any) -> ScheduleSpec:
    return ScheduleSpec.from_config("wf", 0, {"cron": cron, "timezone": tz, **config})


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def local(at: datetime, s: ScheduleSpec) -> str:
    return at.astimezone(s.tz).strftime("%m-%d %H:%M%z")


@pytest.mark.parametrize(("tz", "spring", "fall", "repeated_hour"), [
    ("Europe/Paris", (2026, 3, 29), (2026, 10, 25), 2),  # 02:00->03:00; 03:00->02:00
    ("America/New_York", (2026, 3, 8), (2026, 11, 1), 1),  # 02:00->03:00; 02:00->01:00
])
def test_daily_slot_in_the_gap_and_in_the_repeated_hour(
        tz: str, spring: tuple[int, int, int], fall: tuple[int, int, int],
        repeated_hour: int) -> None:
    gap = spec("30 2 * * *", tz)
    day = datetime(*spring, tzinfo=gap.tz)
    found = [a.astimezone(gap.tz) for a in slots(gap, day - timedelta(days=1),
                                                 day + timedelta(days=2))]
    # one slot a day; on the change day 02:30 does not exist -> 03:30 (shifted by the gap)
    assert [(f.date() - day.date()).days for f in found] == [-1, 0, 1]
    assert [(f.hour, f.minute) for f in found] == [(2, 30), (3, 30), (2, 30)]
    assert found[1].astimezone(UTC) - found[0].astimezone(UTC) == timedelta(hours=24)

    twice = spec(f"30 {repeated_hour} * * *", tz)
    day = datetime(*fall, tzinfo=twice.tz)
    found = [a.astimezone(twice.tz) for a in slots(twice, day - timedelta(days=1),
                                                   day + timedelta(days=2))]
    # the change day's time happens twice: it fires once, at its first occurrence
    assert [(f.date() - day.date()).days for f in found] == [-1, 0, 1]
    assert all((f.hour, f.minute) == (repeated_hour, 30) for f in found)
    assert found[1].utcoffset() == found[0].utcoffset()  # still the summer offset
    assert found[2].astimezone(UTC) - found[1].astimezone(UTC) == timedelta(hours=25)


def test_sub_hourly_slots_are_unique_and_ordered_across_both_changes() -> None:
    s = spec("*/30 * * * *", "America/New_York")
    spring = slots(s, utc(2026, 3, 8, 5), utc(2026, 3, 8, 9))  # 00:00..05:00 local EST
    assert [local(a, s) for a in spring] == [
        "03-08 00:30-0500", "03-08 01:00-0500", "03-08 01:30-0500",
        "03-08 03:00-0400", "03-08 03:30-0400", "03-08 04:00-0400", "03-08 04:30-0400",
        "03-08 05:00-0400"]
    fall = slots(s, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    assert [local(a, s) for a in fall] == [
        "11-01 00:30-0400", "11-01 01:00-0400", "11-01 01:30-0400",
        "11-01 02:00-0500", "11-01 02:30-0500", "11-01 03:00-0500"]
    assert fall == sorted(set(fall))


def test_window_start_and_end() -> None:
    s = spec("0 * * * *", "Europe/Paris", window={"from": "08:00", "to": "10:00"},
             start="2026-06-01", end="2026-06-02T00:00:00+02:00")
    plan = backfill_plan(s, utc(2026, 5, 31), utc(2026, 6, 3))  # end: excluded
    assert len(plan) == 24 and plan[0].at == utc(2026, 5, 31, 22)  # 00:00 Paris, start
    fired = [local(p.at, s) for p in plan if p.state == "fired"]
    assert fired == ["06-01 08:00+0200", "06-01 09:00+0200"]
    assert {p.reason for p in plan if p.state == "skipped"} == {"outside the window"}
    night = spec("0 * * * *", "UTC", window={"from": "22:00", "to": "02:00"})
    assert [a.hour for a in slots(night, utc(2026, 1, 1), utc(2026, 1, 2))
            if night.in_window(a)] == [1, 22, 23, 0]  # (after, until]


def test_next_slots() -> None:
    s = spec("0 7 * * 1-5")  # the fan-out-fan-in example: weekdays 07:00 Paris
    after = utc(2026, 11, 27, 12)  # a Friday
    assert [local(a, s) for a in next_slots(s, after, 3)] == [
        "11-30 07:00+0100", "12-01 07:00+0100", "12-02 07:00+0100"]


@pytest.mark.parametrize(("policy", "fired"), [
    ("skip", []), ("run_once", [9]), ("run_all", [7, 8, 9]),
])
def test_downtime_under_each_missed_policy(policy: str, fired: list[int]) -> None:
    s = spec("0 * * * *", "UTC", missed=policy)
    cursor = utc(2026, 1, 1, 5, 30)
    now = utc(2026, 1, 1, 10, 0, 20)  # down from 05:30; 06..09 are late, 10:00 on time
    decisions, new_cursor = decide(s, cursor, now)
    assert new_cursor == now
    late_fired = [d.at.hour for d in decisions if d.state == "fired" and d.at.hour < 10]
    assert late_fired == (fired if policy != "run_all" else [6, 7, 8, 9])
    assert [d.state for d in decisions if d.at.hour == 10] == ["fired"]
    missed = [d.at.hour for d in decisions if d.state == "missed"]
    assert sorted(missed + late_fired) == [6, 7, 8, 9]


def test_run_all_is_bounded_by_max_catchup() -> None:
    s = spec("0 * * * *", "UTC", missed="run_all", max_catchup=2)
    decisions, _ = decide(s, utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 6, 0, 1))
    by_hour = {d.at.hour: d.state for d in decisions}
    assert by_hour == {1: "missed", 2: "missed", 3: "missed", 4: "fired", 5: "fired",
                       6: "fired"}
    assert "max_catchup 2" in next(d.reason for d in decisions if d.state == "missed")


def test_on_time_means_within_late_after_and_each_slot_once() -> None:
    s = spec("*/5 * * * *", "UTC")
    now = utc(2026, 1, 1, 0, 5) + LATE_AFTER
    first, cursor = decide(s, utc(2026, 1, 1, 0, 1), now)
    assert [(d.at.minute, d.state) for d in first] == [(5, "fired")]
    again, _ = decide(s, cursor, now + timedelta(seconds=1))
    assert again == []


def test_slot_ids_name_the_execution() -> None:
    s = spec("0 7 * * *")
    at = utc(2026, 3, 2, 6)
    assert s.slot_id(at) == "schedule:0:2026-03-02T06:00:00+00:00"
    assert s.execution_id(at) == spec("0 7 * * *").execution_id(at)
