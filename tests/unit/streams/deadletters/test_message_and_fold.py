"""The pure parts of dead letters: the message, its ids, the ladder, the publisher's fold."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from flowlog.aggregates import records
from flowlog.aggregates.execution import events as dev
from flowlog.streams.deadletters.commands import discard_record, retry_record
from flowlog.streams.deadletters.fold import PartitionFold
from flowlog.streams.deadletters.message import (
    DELAY,
    PARKED,
    MalformedDeadLetter,
    all_delays_ms,
    ladder_for,
    message_id_for,
    parse,
    retry_event_id,
    route,
    routing_key,
)

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _records(execution_id: str, *events: tuple[type, dict]) -> list[dict]:
    env = {"occurred_at": NOW, "execution_id": execution_id, "workflow_id": "wf.a",
           "workflow_version": 2, "correlation_id": "c", "causation_id": "x",
           "tenant": "t1"}
    out = []
    for seq, (cls, kw) in enumerate(events, start=1):
        e = cls(event_id=records.execution_event_id(execution_id, seq), seq=seq, **env, **kw)
        out.append(records.event_to_record(e))
    return out


ERR = {"type": "TaskError", "message": "503", "retryable": True}


def _dead_history() -> list[dict]:
    return _records(
        "e1",
        (dev.ExecutionStarted, {"input": {}, "trigger_source": "manual", "dedup_key": None}),
        (dev.NodeScheduled, {"node_id": "n", "node_type": "webhook", "attempt": 1,
                             "input": {"url": "${secret:K}"}, "task_key": "e1:n:1"}),
        (dev.NodeFailed, {"node_id": "n", "attempt": 1, "error": ERR}),
        (dev.NodeDeadLettered, {"node_id": "n", "attempt": 1, "error": ERR}),
        (dev.IncidentRaised, {"incident_id": "n:1", "node_id": "n", "reason": "TaskError"}),
    )


def test_a_dead_letter_carries_the_task_and_derives_its_ids() -> None:
    fold = PartitionFold(render=lambda *a: {"rendered": a[3]})
    letters = fold.apply(_dead_history(), emit=True)
    assert len(letters) == 1
    x = letters[0]
    assert (x.execution_id, x.node_id, x.node_type, x.attempt, x.rung) == ("e1", "n", "webhook",
                                                                          1, 0)
    assert x.input == {"url": "${secret:K}"}  # the reference, never the secret
    assert x.config == {"rendered": {"url": "${secret:K}"}}
    assert x.incident_id == "n:1" and x.error_type == "TaskError" and x.tenant == "t1"
    assert x.message_id == message_id_for(x.dead_letter_event_id)
    assert parse(x.body(), x.message_id) == x  # the body round-trips
    # the same records folded again (a redelivery) make the same message id
    again = PartitionFold().apply(_dead_history(), emit=True)[0]
    assert again.message_id == x.message_id


def test_records_before_the_committed_offset_rebuild_without_publishing() -> None:
    fold = PartitionFold()
    assert fold.apply(_dead_history(), emit=False) == []
    assert fold.execs["e1"].dead == {"n": 1}


def test_a_failed_retry_goes_one_rung_down_and_success_resets() -> None:
    fold = PartitionFold()
    fold.apply(_dead_history(), emit=True)
    env = dict(_dead_history()[0])

    def rec(seq: int, name: str, **kw: object) -> dict:
        r = {**env, "event_type": name, "seq": seq,
             "event_id": records.execution_event_id("e1", seq)}
        r.update(kw)
        return r

    second = fold.apply([rec(6, "NodeScheduled", node_id="n", node_type="webhook",
                             attempt=2, input="{}", task_key="e1:n:2"),
                         rec(7, "NodeFailed", node_id="n", attempt=2, error=ERR),
                         rec(8, "NodeDeadLettered", node_id="n", attempt=2, error=ERR)],
                        emit=True)
    assert [x.rung for x in second] == [1] and second[0].attempt == 2
    fold.apply([rec(9, "NodeScheduled", node_id="n", node_type="webhook", attempt=3,
                    input="{}", task_key="e1:n:3"),
                rec(10, "NodeSucceeded", node_id="n", attempt=3, output="{}")], emit=True)
    assert fold.execs["e1"].dead == {}
    fold.apply([rec(11, "ExecutionSucceeded", output="{}")], emit=True)
    assert "e1" not in fold.execs


def test_the_ladder_routes_by_rung_then_parks() -> None:
    letter = PartitionFold().apply(_dead_history(), emit=True)[0]
    ladder = ladder_for("wf.a", [60, 600], {"other": [1]})
    assert ladder == [60_000, 600_000]
    assert route(letter, ladder) == (DELAY, 60_000)
    assert route(letter.model_copy(update={"rung": 2}), ladder) == (PARKED, None)
    assert route(letter, ladder_for("wf.a", [60], {"wf.a": []})) == (PARKED, None)
    assert routing_key(DELAY, letter, 60_000) == "delay.60000.wf_a.webhook"
    assert routing_key(PARKED, letter) == "parked.wf_a.webhook"
    assert all_delays_ms([1, 2], {"x": [2, 3.5]}) == [1000, 2000, 3500]


@pytest.mark.parametrize(("body", "says"), [
    (b"nope", "not JSON"), (b"[]", "not an object"), (b'{"v": 7}', "v=7"),
    (b'{"v": 1, "message_id": "m"}', "field"),
])
def test_malformed_bodies_say_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(MalformedDeadLetter, match=says):
        parse(body)


def test_commands_record_who_and_why_with_ids_from_the_message() -> None:
    letter = PartitionFold().apply(_dead_history(), emit=True)[0]
    r = retry_record(letter, reason="fixed", requested_by="alice", now=NOW)
    assert r["event_id"] == retry_event_id(letter.message_id)
    assert (r["requested_by"], r["reason"], r["node_id"]) == ("alice", "fixed", "n")
    assert r["causation_id"] == letter.dead_letter_event_id
    name, d = discard_record(letter, then="resume", reason="dup", requested_by="bob", now=NOW)
    assert name == "ResumeRequested" and d["requested_by"] == "bob" and "dup" in d["reason"]
    assert orjson.loads(letter.body())["v"] == 1
