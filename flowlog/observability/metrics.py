"""The metric objects of every flowlog process, defined once (import them, do not redefine).

Names follow Prometheus conventions: ``_total`` counters, ``_seconds`` histograms, base
units. Labels are bounded sets (role, topic, group, partition, workflow id, node type,
provider/model, route): never an execution id. ``infra/prometheus/rules.yml`` alerts on
these names; keep them in step.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, disable_created_metrics

# ``*_created`` series double the exposition and no rule reads them
disable_created_metrics()

#: Latency buckets (seconds) from 1 ms to 1 min: decisions sit low, agent tasks high.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)

PROCESS_INFO = Info("flowlog_process", "The flowlog process: name, roles, version.")

# --- Kafka records --------------------------------------------------------------------------
EVENTS_IN = Counter(
    "flowlog_events_in_total", "Kafka records read, per role and topic.", ["role", "topic"])
EVENTS_OUT = Counter(
    "flowlog_events_out_total", "Kafka records written, per role and topic.", ["role", "topic"])
QUARANTINED = Counter(
    "flowlog_quarantined_total",
    "Input records set aside (undecodable or rejected by a role), per role.", ["role"])
CONSUMER_LAG = Gauge(
    "flowlog_consumer_lag",
    "Records behind the partition's end (high watermark minus position), per consumer "
    "group, topic and partition; sampled every few seconds.", ["group", "topic", "partition"])

# --- the engine -----------------------------------------------------------------------------
DECISION_LATENCY = Histogram(
    "flowlog_decision_seconds",
    "Time from an input record's Kafka timestamp to the orchestrator's decision on it "
    "(queueing plus deciding).", ["role"], buckets=LATENCY_BUCKETS)
DECISIONS = Counter(
    "flowlog_decisions_total", "Decisions written by the orchestrator (one record each).")
EXECUTIONS_FINISHED = Counter(
    "flowlog_executions_finished_total",
    "Executions that reached a terminal event, per workflow and outcome "
    "(succeeded, failed, cancelled, rejected).", ["workflow", "outcome"])
TASK_LATENCY = Histogram(
    "flowlog_task_seconds", "Node task run time in the executor, per node type and status.",
    ["node_type", "status"], buckets=LATENCY_BUCKETS)
TASKS_INFLIGHT = Gauge("flowlog_tasks_inflight", "Node tasks running in this executor.")
RETRIES = Counter(
    "flowlog_retries_total", "Node retries scheduled (NodeRetryScheduled), per workflow.",
    ["workflow"])
DEAD_LETTERS = Counter(
    "flowlog_dead_letters_total",
    "Node tasks dead-lettered (NodeDeadLettered) or parked, per workflow.", ["workflow"])
INCIDENTS = Counter(
    "flowlog_incidents_total", "Incidents raised and resolved, per workflow.",
    ["workflow", "change"])
OPEN_INCIDENTS = Gauge(
    "flowlog_open_incidents", "Incidents open now (set by the process that projects them).")
OPEN_BREAKERS = Gauge(
    "flowlog_open_breakers", "Circuit breakers open or half-open in this executor.")

# --- models ---------------------------------------------------------------------------------
LLM_TOKENS = Counter(
    "flowlog_llm_tokens_total", "Model tokens, per provider, model and direction (in, out).",
    ["provider", "model", "direction"])
LLM_COST = Counter(
    "flowlog_llm_cost_usd_total", "Model cost in US dollars, per provider and model.",
    ["provider", "model"])

# --- the read side and HTTP -----------------------------------------------------------------
PROJECTION_LAG = Gauge(
    "flowlog_projection_lag_seconds",
    "Age of the newest event a projection has applied (now minus its occurred_at), "
    "per projection.", ["projection"])
HTTP_LATENCY = Histogram(
    "flowlog_http_request_seconds", "HTTP request time, per route template, method and status.",
    ["route", "method", "status"], buckets=LATENCY_BUCKETS)

#: Series every engine process exports from start (the make-run e2e test scrapes them).
CORE_SERIES = ("flowlog_process_info", "flowlog_events_in_total", "flowlog_consumer_lag")

_TERMINAL = {"ExecutionSucceeded": "succeeded", "ExecutionFailed": "failed",
             "ExecutionCancelled": "cancelled", "ExecutionRejected": "rejected"}
_COUNTED = frozenset({*_TERMINAL, "NodeRetryScheduled", "NodeDeadLettered", "IncidentRaised",
                      "IncidentResolved"})


class Children(dict[tuple[Any, ...], Any]):
    """A metric's children by label values, each looked up once: ``children[a, b]`` is
    ``metric.labels(a, b)``.

    ``labels()`` checks the values, turns them into strings and takes the metric's lock on
    every call (~2 µs); the roles count the same few label sets for every record (role and
    topic, node type and status), so a plain dict hit (~0.05 µs) replaces it. The cache is
    as bounded as the metric's own children (labels are bounded sets, see above). A child
    removed from its metric (``remove``/``clear``, which flowlog never calls) would keep
    counting where no scrape sees it: ``clear()`` this cache too.
    """

    __slots__ = ("metric",)

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, labels: tuple[Any, ...]) -> Any:
        child = self[labels] = self.metric.labels(*labels)
        return child


#: the roles' hot-path children (hooks.py), one dict hit per record
EVENTS_IN_BY = Children(EVENTS_IN)
EVENTS_OUT_BY = Children(EVENTS_OUT)
DECISION_LATENCY_BY = Children(DECISION_LATENCY)
TASK_LATENCY_BY = Children(TASK_LATENCY)
_FINISHED_BY = Children(EXECUTIONS_FINISHED)
_RETRIES_BY = Children(RETRIES)
_DEAD_LETTERS_BY = Children(DEAD_LETTERS)
_INCIDENTS_BY = Children(INCIDENTS)


def count_decision(events: list[object], workflow_id: str) -> None:
    """Count one decision's events of note (terminal, retry, dead letter, incident).

    Cheap on the hot path: one set lookup per event, a counter only for the rare ones.
    """
    DECISIONS.inc()
    for e in events:
        name = type(e).__name__
        if name not in _COUNTED:
            continue
        if name in _TERMINAL:
            _FINISHED_BY[workflow_id, _TERMINAL[name]].inc()
        elif name == "NodeRetryScheduled":
            _RETRIES_BY[workflow_id,].inc()
        elif name == "NodeDeadLettered":
            _DEAD_LETTERS_BY[workflow_id,].inc()
        else:
            _INCIDENTS_BY[workflow_id, "raised" if name == "IncidentRaised"
                          else "resolved"].inc()


def count_model_calls(calls: list[dict[str, object]] | None) -> None:
    """Tokens and cost of an agent task's model calls (the executor's outcome records)."""
    for call in calls or ():
        provider, model = str(call.get("provider") or "?"), str(call.get("model") or "?")
        for direction, key in (("in", "input_tokens"), ("out", "output_tokens")):
            n = call.get(key)
            if isinstance(n, int) and n > 0:
                LLM_TOKENS.labels(provider, model, direction).inc(n)
        cost = call.get("cost_usd")
        if isinstance(cost, int | float) and cost > 0:
            LLM_COST.labels(provider, model).inc(float(cost))


__all__ = [
    "CONSUMER_LAG", "CORE_SERIES", "DEAD_LETTERS", "DECISIONS", "DECISION_LATENCY",
    "DECISION_LATENCY_BY", "EVENTS_IN", "EVENTS_IN_BY", "EVENTS_OUT", "EVENTS_OUT_BY",
    "EXECUTIONS_FINISHED", "HTTP_LATENCY", "INCIDENTS", "LATENCY_BUCKETS", "LLM_COST",
    "LLM_TOKENS", "OPEN_BREAKERS", "OPEN_INCIDENTS", "PROCESS_INFO", "PROJECTION_LAG",
    "QUARANTINED", "REGISTRY", "RETRIES", "TASKS_INFLIGHT", "TASK_LATENCY", "TASK_LATENCY_BY",
    "Children", "count_decision", "count_model_calls",
]
