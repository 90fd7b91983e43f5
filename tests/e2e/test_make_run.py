"""`make run` as a newcomer uses it: the whole system from one command, every example from
the CLI, every process's /metrics, and a clean stop.

One system per module (it is expensive): `python -m flowlog.cli run --no-services` —
what `make run` runs after `make up` (the test fixtures bring the services up; `make up`'s
`pip install` step is left out) — in the background, on topics, a schema and a state
folder of its own. No test-only tools: the examples use the `examples/` plugin and its
demo server, as on a fresh machine with no keys.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flowlog.streams.runtime.worker import ROLES

from tests.conftest import _TEST_PREFIXES

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ENGINE_SERIES = ("flowlog_process_info{", "flowlog_events_in_total{",
                 "flowlog_events_out_total{", "flowlog_consumer_lag{")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class System:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    state_dir: Path
    output: Path
    demo_base: str
    inputs: dict[str, Any] = field(default_factory=dict)  # only if 8790 was taken

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowlog.cli", *args], cwd=REPO,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def run_files(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.state_dir / "run" / "metrics").glob("*.json")):
            group = json.loads(path.read_text())[0]
            out.append({"process": group["labels"]["process"],
                        "pid": int(group["labels"]["pid"]),
                        "url": "http://" + group["targets"][0]})
        return out


def _wait_for(check: Any, within: float, what: str, system: System | None = None) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if system is not None and system.proc.poll() is not None:
            raise AssertionError(f"flowlog run exited ({system.proc.returncode}) while "
                                 f"waiting for {what}:\n{system.text()[-4000:]}")
        time.sleep(0.2)  # polling a file/endpoint with a deadline, not a timing guess
    tail = system.text()[-4000:] if system else ""
    raise AssertionError(f"no {what} within {within:.0f}s\n{tail}")


@pytest.fixture(scope="module")
def system(kafka_bootstrap: str, pg_dsn: str, redis_url: str, amqp_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    uid = uuid.uuid4().hex[:10]
    prefix, schema = f"t{uid}.", f"t_{uid}"
    _TEST_PREFIXES.append(prefix)  # the session deletes these topics at its end
    state = tmp_path_factory.mktemp("make-run")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLOWLOG_") or k in ("FLOWLOG_KAFKA_BOOTSTRAP",)}
    env.update({"FLOWLOG_TOPIC_PREFIX": prefix, "FLOWLOG_PG_SCHEMA": schema,
                "FLOWLOG_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1",
                "COLUMNS": "200", "FLOWLOG_PROMETHEUS_PORT": str(_free_port()),
                # processes with a fixed HTTP port get a free one (others may run theirs)
                "FLOWLOG_WEBHOOK_PORT": str(_free_port()),
                "FLOWLOG_GATEWAY_PORT": str(_free_port()),
                "FLOWLOG_API_PORT": str(_free_port())})
    inputs: dict[str, Any] = {}
    port = 8790
    if not _port_free(port):  # someone runs the demo already: ours elsewhere
        port = _free_port()
        env["FLOWLOG_DEMO_PORT"] = str(port)
        inputs = {"helpdesk_url": f"http://127.0.0.1:{port}/demo/helpdesk",
                  "partner_url": f"http://127.0.0.1:{port}/demo/partner"}
    output = state / "run.out"
    with output.open("wb") as out:
        # --no-services: the fixtures above made sure they answer (a state folder of our
        # own would not own them: `flowlog up` there would try to start a second RabbitMQ)
        proc = subprocess.Popen([sys.executable, "-m", "flowlog.cli", "run", "--no-services"],
                                cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    sys_ = System(proc, env, state, output, f"http://127.0.0.1:{port}", inputs)
    try:
        _wait_for(lambda: "flowlog is running" in sys_.text(), 300, "running system", sys_)
        yield sys_
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for entry in sys_.run_files():  # anything the test left: never leak processes
            try:
                os.kill(entry["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_demo_execution_ran_to_success(system: System) -> None:
    text = system.text()
    assert "demo: ExecutionSucceeded" in text, text[-3000:]
    assert "DEMO model" in text  # no keys here: the stand-in is announced as such
    assert "flowlog status" in text and "flowlog watch" in text


def test_every_process_is_up_and_serves_its_core_metrics(system: System) -> None:
    from flowlog.processes import PROCESSES

    entries = system.run_files()
    names = {e["process"] for e in entries}
    assert names == {*ROLES, *PROCESSES}, names  # the default layout: processor + executor
    for e in entries:
        with urllib.request.urlopen(e["url"] + "/readyz", timeout=5) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["ready"] is True
        wanted = [f'flowlog_process_info{{process="{e["process"]}"',
                  "process_cpu_seconds_total"]
        if e["process"] in ROLES:
            wanted += ENGINE_SERIES  # consumer lag: sampled every few seconds
        if e["process"] == "executor":
            wanted.append("flowlog_task_seconds_count{")
        if e["process"] == "processor":
            wanted.append("flowlog_decision_seconds_count{")

        def complete(url: str = e["url"], wanted: list[str] = wanted) -> bool:
            with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
                body = resp.read().decode()
            return all(w in body for w in wanted)

        _wait_for(complete, 30, f"the core series of {e['process']}: {wanted}", system)
    status = system.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for name in names:
        assert name in status.stdout


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="Prometheus is not installed: `make promtool` installs it")
def test_prometheus_scrapes_every_process(system: System) -> None:
    url = f"http://127.0.0.1:{system.env['FLOWLOG_PROMETHEUS_PORT']}"
    expected = {e["process"] for e in system.run_files()}

    def all_up() -> bool:
        try:
            with urllib.request.urlopen(url + "/api/v1/targets", timeout=5) as resp:
                targets = json.loads(resp.read())["data"]["activeTargets"]
        except OSError:
            return False
        return {t["labels"]["process"] for t in targets if t["health"] == "up"} == expected

    _wait_for(all_up, 120, "every process scraped by Prometheus", system)
    with urllib.request.urlopen(url + "/api/v1/rules", timeout=5) as resp:
        groups = json.loads(resp.read())["data"]["groups"]
    assert {g["name"] for g in groups} >= {"flowlog-errors", "flowlog-lag"}


def _trigger(system: System, workflow: str, input_: dict[str, Any]) -> str:
    full = {**input_, **{k: v for k, v in system.inputs.items()
                         if (workflow, k) in {("support-triage", "helpdesk_url"),
                                              ("webhook-retry-deadletter", "partner_url")}}}
    done = system.cli("trigger", workflow, "--input", json.dumps(full), "--wait",
                      "--timeout", "120", timeout=180)
    assert done.returncode == 0, f"{workflow}: {done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    assert "ExecutionSucceeded" in done.stdout.splitlines()[-1], done.stdout[-3000:]
    return done.stdout.splitlines()[0].strip()


TICKET = {"id": "t-1", "subject": "Refund please", "body": "I was charged twice."}
CASES: dict[str, dict[str, Any]] = {
    "bench-5node": {},
    "batch-loop": {"records": ["a", "b", "c"]},
    "fan-out-fan-in": {"symbol": "ACME"},
    "support-triage": {"ticket": TICKET},
    "subworkflow-caller": {"ticket": {**TICKET, "subject": "App crashes"}},
    "webhook-retry-deadletter": {"order_id": "o-1"},
}


def test_every_example_succeeds_from_the_cli(system: System) -> None:
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == {*CASES, "delay-and-wait"}
    for workflow, input_ in CASES.items():
        _trigger(system, workflow, input_)


def test_delay_and_wait_succeeds_when_the_answer_arrives(system: System) -> None:
    started = system.cli("trigger", "delay-and-wait", "--input", '{"quote_id": "q-7"}')
    assert started.returncode == 0, started.stderr
    execution_id = started.stdout.strip()

    def waiting() -> bool:
        h = system.cli("history", execution_id, "--json")
        return any(json.loads(line).get("node_id") == "approval" and
                   json.loads(line)["event_type"] == "NodeStarted"
                   for line in h.stdout.splitlines() if line.startswith("{"))

    _wait_for(waiting, 120, "the approval wait", system)
    answer = {"event_type": "EventReceived", "execution_id": execution_id,
              "workflow_id": "delay-and-wait", "workflow_version": 1,
              "event_name": "quote.answered", "payload": {"quote_id": "q-7", "accepted": True}}
    sent = system.cli("publish", json.dumps(answer))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    done = system.cli("watch", execution_id, "--timeout", "120", timeout=180)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "ExecutionSucceeded" in done.stdout.splitlines()[-1]
    assert '"approved"' in done.stdout.splitlines()[-1]


def test_stop_ends_every_process(system: System) -> None:
    pids = [e["pid"] for e in system.run_files()]
    assert pids
    stopped = system.cli("stop", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert system.proc.wait(timeout=60) == 0, system.text()[-3000:]
    assert "stopped" in system.text().splitlines()[-1]
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        assert state == "Z", f"process {pid} still runs after flowlog stop"
    assert system.run_files() == []
    assert not (system.state_dir / "run" / "supervisor.json").exists()
