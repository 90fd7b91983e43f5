"""Webhook nodes against a real local HTTP server: idempotency key, error mapping,
timeouts, circuit breakers, secrets kept out of outcomes."""

from __future__ import annotations

import socket

import pytest
from flowlog.streams.executors import TaskRunner
from flowlog.streams.executors.limits import BreakerState
from flowlog.streams.executors.secrets import REDACTED

from flowlog.settings import Settings
from tests.support.fake_webhook import FakeWebhookServer
from tests.support.tasks import make_task


def hook(url: str, **config: object) -> dict[str, object]:
    return {"url": url, "method": "POST", **config}


async def test_post_with_rendered_body_headers_and_idempotency_key(
    runner: TaskRunner, fake_webhook: FakeWebhookServer
) -> None:
    task = make_task("webhook", hook(f"{fake_webhook.url}/tickets/42/replies",
                                     headers={"X-Source": "flowlog"}, body='{"text": "hi"}'))
    out = await runner.run(task)
    assert out.status == "succeeded", out.error
    assert out.output["status"] == 200
    assert out.output["json"] == {"ok": True, "received": {"text": "hi"}}
    (req,) = fake_webhook.requests
    assert req.method == "POST" and req.path == "/tickets/42/replies"
    assert req.headers["idempotency-key"] == task.task_key
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-source"] == "flowlog"


async def test_a_given_idempotency_key_wins(
    runner: TaskRunner, fake_webhook: FakeWebhookServer
) -> None:
    task = make_task("webhook", hook(fake_webhook.url, headers={"idempotency-key": "mine"}))
    assert (await runner.run(task)).status == "succeeded"
    assert fake_webhook.requests[0].headers["idempotency-key"] == "mine"


@pytest.mark.parametrize(("status", "retryable"),
                         [(500, True), (503, True), (429, True), (408, True),
                          (400, False), (404, False), (422, False)])  # fmt: skip
async def test_status_mapping(
    runner: TaskRunner, fake_webhook: FakeWebhookServer, status: int, retryable: bool
) -> None:
    fake_webhook.respond(status)
    out = await runner.run(make_task("webhook", hook(fake_webhook.url)))
    assert out.status == "failed" and out.error is not None
    assert out.error["type"] == "http_error" and out.error["retryable"] is retryable
    assert str(status) in out.error["message"]


async def test_fails_twice_then_succeeds_on_the_third_attempt(
    runner: TaskRunner, fake_webhook: FakeWebhookServer
) -> None:
    fake_webhook.fail(2, status=500)
    results = []
    for attempt in (1, 2, 3):
        task = make_task("webhook", hook(fake_webhook.url), attempt=attempt, execution_id="ex-r")
        results.append(await runner.run(task))
    assert [r.status for r in results] == ["failed", "failed", "succeeded"]
    assert all(r.error and r.error["retryable"] for r in results[:2])
    keys = [r.headers["idempotency-key"] for r in fake_webhook.requests]
    assert keys == ["ex-r:n1:1", "ex-r:n1:2", "ex-r:n1:3"]


async def test_a_hanging_target_times_out_retryably(
    runner: TaskRunner, fake_webhook: FakeWebhookServer
) -> None:
    fake_webhook.hang(3)
    out = await runner.run(make_task("webhook", hook(fake_webhook.url), timeout_ms=200))
    assert out.error and out.error["type"] == "timeout" and out.error["retryable"]


async def test_connection_refused_is_retryable(runner: TaskRunner) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = await runner.run(make_task("webhook", hook(f"http://127.0.0.1:{port}/x")))
    assert out.error and out.error["type"] == "connection_error" and out.error["retryable"]


async def test_bad_config_is_not_retryable(runner: TaskRunner) -> None:
    out = await runner.run(make_task("webhook", hook("/relative/path")))
    assert out.error and out.error["type"] == "invalid_config" and not out.error["retryable"]
    out = await runner.run(make_task("webhook", hook("http://x", method="BREW")))
    assert out.error and out.error["type"] == "invalid_config"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_circuit_opens_fails_fast_then_half_opens(
    exec_settings: Settings, fake_webhook: FakeWebhookServer
) -> None:
    clock = FakeClock()
    runner = TaskRunner(exec_settings, monotonic=clock)
    try:
        fake_webhook.fail(3, status=503)
        for _ in range(3):
            out = await runner.run(make_task("webhook", hook(fake_webhook.url)))
            assert out.error and out.error["type"] == "http_error"
        out = await runner.run(make_task("webhook", hook(fake_webhook.url)))
        assert out.error and out.error["type"] == "circuit_open" and out.error["retryable"]
        assert len(fake_webhook.requests) == 3  # failed fast: the target was not called
        breaker = runner.limits.breakers.get(fake_webhook.url)
        assert breaker.state is BreakerState.open
        clock.now += exec_settings.breaker_cooldown_s
        assert breaker.state is BreakerState.half_open
        out = await runner.run(make_task("webhook", hook(fake_webhook.url)))
        assert out.status == "succeeded" and len(fake_webhook.requests) == 4
        assert breaker.state is BreakerState.closed
    finally:
        await runner.aclose()


async def test_4xx_does_not_open_the_circuit(
    runner: TaskRunner, fake_webhook: FakeWebhookServer
) -> None:
    for _ in range(5):
        fake_webhook.respond(404)
        await runner.run(make_task("webhook", hook(fake_webhook.url)))
    assert runner.limits.breakers.get(fake_webhook.url).state is BreakerState.closed


async def test_secrets_resolve_at_run_time_and_never_leave(
    runner: TaskRunner, fake_webhook: FakeWebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWLOG_SECRET_PARTNER_KEY", "s3cr3t-value")
    config = hook(fake_webhook.url, headers={"X-Api-Key": "${secret:PARTNER_KEY}"},
                  body='{"echo": "${secret:PARTNER_KEY}"}')  # fmt: skip
    task = make_task("webhook", config)
    out = await runner.run(task)
    assert fake_webhook.requests[0].headers["x-api-key"] == "s3cr3t-value"
    assert out.status == "succeeded"
    assert out.output["json"] == {"ok": True, "received": {"echo": REDACTED}}
    assert "s3cr3t-value" not in repr(out)
    assert task.config["headers"]["X-Api-Key"] == "${secret:PARTNER_KEY}"  # task unchanged

    fake_webhook.respond(400, {"error": "bad key s3cr3t-value"})
    out = await runner.run(task)
    assert out.error and "s3cr3t-value" not in out.error["message"]
    assert REDACTED in out.error["message"]


async def test_missing_secret_is_not_retryable(runner: TaskRunner) -> None:
    out = await runner.run(make_task("webhook", hook("http://x", headers={
        "A": "${secret:NOT_SET_ANYWHERE}"})))  # fmt: skip
    assert out.error and out.error["type"] == "secret_missing" and not out.error["retryable"]
    assert "FLOWLOG_SECRET_NOT_SET_ANYWHERE" in out.error["message"]
