"""The metrics endpoint, its run file, and the counters the roles call."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY

from flowlog.observability import metrics
from flowlog.observability.server import Health, MetricsServer, read_run_files


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_endpoint_serves_metrics_health_and_readiness(tmp_path: Path) -> None:
    health = Health("unit-proc", ["orchestrator"])
    server = MetricsServer(health, "127.0.0.1", 0, tmp_path)
    try:
        metrics.EVENTS_IN.labels("orchestrator", "unit-topic").inc(3)
        code, body = get(server.url + "/metrics")
        assert code == 200
        assert 'flowlog_events_in_total{role="orchestrator",topic="unit-topic"}' in body
        assert get(server.url + "/healthz")[0] == 200
        code, body = get(server.url + "/readyz")
        assert code == 503 and json.loads(body)["ready"] is False
        health.is_ready = True
        code, body = get(server.url + "/readyz")
        assert code == 200 and json.loads(body)["process"] == "unit-proc"
        health.failure = "role executor stopped"
        assert get(server.url + "/readyz")[0] == 503
        assert get(server.url + "/nope")[0] == 404
        (entry,) = read_run_files(tmp_path)
        assert entry["process"] == "unit-proc" and entry["url"] == server.url
        assert entry["alive"] is True
        group = json.loads(Path(entry["file"]).read_text())[0]  # Prometheus file_sd shape
        assert group["targets"] == [server.url.removeprefix("http://")]
    finally:
        server.stop()
    assert read_run_files(tmp_path) == []


def test_stalled_loop_fails_liveness(tmp_path: Path) -> None:
    health = Health("p", ["p"], stall_after_s=0.0)
    server = MetricsServer(health, "127.0.0.1", 0, None)
    try:
        assert get(server.url + "/healthz")[0] == 503
    finally:
        server.stop()


def test_taken_port_error_says_what_to_do(tmp_path: Path) -> None:
    first = MetricsServer(Health("a", ["a"]), "127.0.0.1", 0, None)
    try:
        try:
            MetricsServer(Health("b", ["b"]), "127.0.0.1", first.port, None)
        except OSError as exc:
            assert "FLOWLOG_METRICS_PORT=0" in str(exc)
        else:
            raise AssertionError("a taken port must fail")
    finally:
        first.stop()


def value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_count_decision_counts_the_rare_events_only() -> None:
    class ExecutionSucceeded: ...
    class NodeRetryScheduled: ...
    class NodeDeadLettered: ...
    class NodeStarted: ...

    before = value("flowlog_retries_total", {"workflow": "wf-u"})
    metrics.count_decision([NodeStarted(), NodeRetryScheduled(), NodeRetryScheduled()], "wf-u")
    metrics.count_decision([NodeDeadLettered(), ExecutionSucceeded()], "wf-u")
    assert value("flowlog_retries_total", {"workflow": "wf-u"}) == before + 2
    assert value("flowlog_dead_letters_total", {"workflow": "wf-u"}) >= 1
    assert value("flowlog_executions_finished_total",
                 {"workflow": "wf-u", "outcome": "succeeded"}) >= 1


def test_model_calls_count_tokens_and_cost() -> None:
    metrics.count_model_calls([{"provider": "openai", "model": "m-u", "input_tokens": 10,
                                "output_tokens": 4, "cost_usd": 0.5}, {"model": None}])
    assert value("flowlog_llm_tokens_total",
                 {"provider": "openai", "model": "m-u", "direction": "in"}) >= 10
    assert value("flowlog_llm_cost_usd_total", {"provider": "openai", "model": "m-u"}) >= 0.5


def test_http_latency_is_labelled_by_route_template() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from flowlog.observability.http import instrument_app

    app = FastAPI()

    @app.get("/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    instrument_app(app)
    client = TestClient(app)
    assert client.get("/things/abc").status_code == 200
    assert client.get("/things/def").status_code == 200
    assert client.get("/missing").status_code == 404
    labels = {"route": "/things/{thing_id}", "method": "GET", "status": "200"}
    assert value("flowlog_http_request_seconds_count", labels) == 2
    assert value("flowlog_http_request_seconds_count",
                 {"route": "<unmatched>", "method": "GET", "status": "404"}) >= 1
