"""Each example definition, folded through a scripted run to the expected result."""

from __future__ import annotations

import pytest
from flowlog.aggregates.definition import load_definition
from flowlog.aggregates.definition.model import NODE_TYPES
from flowlog.aggregates.execution.taskconfig import render_task_config

from tests.support.runs import EXAMPLES, example
from tests.support.scenarios import (
    batch_loop,
    bench_5node,
    delay_and_wait_approved,
    delay_and_wait_expired,
    fan_out_fan_in,
    subworkflow_caller,
    support_triage_billing,
    webhook_dead_letter_then_resume,
    webhook_dead_letter_then_retry,
)

pytestmark = pytest.mark.unit


def test_examples_together_use_every_node_type() -> None:
    used = {n.type for f in EXAMPLES.glob("*.yaml") for n in load_definition(f).nodes.values()}
    assert used == set(NODE_TYPES)


def test_support_triage_routes_billing_and_posts_reply() -> None:
    run = support_triage_billing()
    st = run.state
    assert st.status == "succeeded"
    assert st.output == {"category": "billing", "reply": "We refunded you 20 EUR."}
    assert st.nodes["file_issue"].status == "skipped"
    assert st.nodes["kb_answer"].status == "skipped"
    assert st.usage["input_tokens"] == 120 and st.usage["tool_calls"] == 1
    assert "AgentModelCalled" in run.types() and "AgentToolCalled" in run.types()
    draft = next(e for e in run.events if e.event_type == "NodeScheduled" and e.node_id == "draft")
    assert draft.input == {"facts": {"eligible": True, "amount": 20}}
    post = next(e for e in run.events if e.event_type == "NodeScheduled"
                and e.node_id == "post_reply")  # fmt: skip
    demo = "http://127.0.0.1:8790/demo/helpdesk"  # the input's default: make run's demo server
    assert post.input == {"ticket_id": "T-42", "text": "We refunded you 20 EUR.",
                          "helpdesk_url": demo}
    assert post.task_key == "triage-1:post_reply:1"
    config = render_task_config(run.d, "post_reply", post.input, execution_id="triage-1")
    assert config["url"] == f"{demo}/api/tickets/T-42/replies"
    assert config["body"] == '{"text": "We refunded you 20 EUR."}'
    assert config["headers"]["Authorization"] == "Bearer ${secret:HELPDESK_TOKEN}"


def test_fan_out_joins_two_of_three() -> None:
    run = fan_out_fan_in()
    st = run.state
    assert st.nodes["provider_c"].status == "failed"
    assert st.nodes["quotes"].output == {"provider_a": {"price": 10.5},
                                         "provider_b": {"price": 10.25}}  # fmt: skip
    assert st.output["best"] == 10.25  # the lowest price, whatever the map order
    assert st.status == "succeeded"
    scheduled = [e.node_id for e in run.events if e.event_type == "NodeScheduled"]
    assert sorted(scheduled) == ["provider_a", "provider_b", "provider_c"]


def test_batch_loop_respects_max_concurrency_and_while_bound() -> None:
    run = batch_loop()
    st = run.state
    assert st.status == "succeeded"
    assert [o["id"] for o in st.output["enriched"]] == ["r1", "r2", "r3"]
    assert st.output["total"] == [3, 7, 12]
    running = max_running = 0
    for e in run.events:
        if e.event_type == "LoopIterationStarted" and e.node_id == "enrich":
            running += 1
            max_running = max(max_running, running)
        elif e.event_type == "LoopIterationCompleted" and e.node_id == "enrich":
            running -= 1
    assert max_running == 2
    assert st.nodes["enrich[0]"].attempt == 2


def test_webhook_retries_then_dead_letters_then_retried_by_hand() -> None:
    run = webhook_dead_letter_then_retry()
    types = run.types()
    assert types.count("NodeRetryScheduled") == 2
    assert types.count("NodeDeadLettered") == 1 and "IncidentRaised" in types
    assert "IncidentResolved" in types
    assert run.state.nodes["notify"].attempt == 4
    assert run.state.status == "succeeded" and not run.state.incidents
    retries = [e for e in run.events if e.event_type == "NodeRetryScheduled"]
    delays = [(e.due_at - e.occurred_at).total_seconds() for e in retries]
    assert 0.9 <= delays[0] <= 1.1 and 1.8 <= delays[1] <= 2.2  # 1s, 2s ± 10 % jitter


def test_incident_status_and_resume_continues_past_node() -> None:
    run = webhook_dead_letter_then_resume()
    assert run.state.nodes["notify"].status == "failed"
    record = next(e for e in run.events if e.event_type == "NodeScheduled"
                  and e.node_id == "record")  # fmt: skip
    assert record.input == {"order_id": "O-2", "status": "failed"}
    assert run.state.status == "succeeded"


def test_delay_then_matching_event_approves() -> None:
    run = delay_and_wait_approved()
    assert run.state.output == {"decision": "approved"}
    assert run.state.nodes["rejected"].status == "skipped"
    assert "InputIgnored" in run.types()  # the event for another quote


def test_wait_times_out_and_fails_execution() -> None:
    run = delay_and_wait_expired()
    assert run.state.status == "failed"
    assert run.state.failed_node == "approval"
    assert run.state.error == {"type": "Timeout", "message": "no result within 172800000 ms"}


def test_subworkflow_is_a_task() -> None:
    run = subworkflow_caller()
    sched = next(e for e in run.events if e.event_type == "NodeScheduled")
    assert sched.node_type == "subworkflow" and sched.input == {"ticket": run.state.input["ticket"]}
    assert run.state.output == {"category": "billing"}


def test_bench_dag_order() -> None:
    run = bench_5node()
    order = [e.node_id for e in run.events if e.event_type == "NodeScheduled"]
    assert order[0] == "A" and set(order[1:3]) == {"B", "C"} and order[3:] == ["D", "E"]
    assert run.state.status == "succeeded"
    assert example("bench-5node").roots == ("A",)
