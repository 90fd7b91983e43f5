"""The `make run` supervisor's plan and stop, without services (infra/supervisor.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flowlog.infra.supervisor import ENGINE_ROLES, Child, Supervisor, stop_running

from flowlog.processes import PROCESSES
from flowlog.settings import Settings


def supervisor(tmp_path: Path, **kw: object) -> Supervisor:
    settings = Settings(state_dir=tmp_path, prometheus_port=0, **kw)  # type: ignore[arg-type]
    sup = Supervisor(settings, scale={"executor": 2})
    sup.env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOG_")}
    return sup


def test_plan_has_every_engine_role_and_every_registered_process(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    sup._demo_environment()
    names = [c.name for c in sup.plan()]
    assert names[0] == "demo-server"
    assert set(names) == {"demo-server", *ENGINE_ROLES, "executor-2", *PROCESSES}
    argv = {c.name: c.argv for c in sup.plan()}
    assert argv["executor-2"][-2:] == ["worker", "executor"]
    for name in PROCESSES:
        assert argv[name][-2:] == ["worker", name]


def test_no_model_key_points_agents_at_the_demo_server_and_says_so(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    sup._demo_environment()
    assert sup.env["FLOWLOG_OPENAI_BASE_URL"] == "http://127.0.0.1:8790/v1"
    assert any("DEMO model" in n and "NOT a language model" in n for n in sup.notes)
    assert sup.env["FLOWLOG_SECRET_HELPDESK_TOKEN"].startswith("demo-")


def test_a_model_key_keeps_the_real_endpoint(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, openai_api_key="sk-real")
    sup._demo_environment()
    assert "FLOWLOG_OPENAI_BASE_URL" not in sup.env
    assert not any("DEMO model" in n for n in sup.notes)


def test_stop_signals_the_supervisor_and_waits(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "supervisor.json").write_text(json.dumps({"pid": proc.pid, "children": {}}))
    try:
        message = stop_running(settings, timeout=20)
        assert "stopped" in message
        assert proc.wait(timeout=5) != 0  # ended by SIGTERM
        assert not (run / "supervisor.json").exists()
    finally:
        proc.kill()
    assert "nothing to stop" in stop_running(settings)


def test_stop_ends_the_children_of_a_supervisor_that_was_killed(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run = tmp_path / "run"
    run.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run / "supervisor.json").write_text(json.dumps(
        {"pid": gone.pid, "children": {"executor": child.pid}}))
    try:
        assert "stopped" in stop_running(settings, timeout=20)
        assert child.wait(timeout=5) != 0
    finally:
        child.kill()


def test_supervise_restarts_a_child_that_died(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    log = tmp_path / "x.log"
    child = Child("flaky", [sys.executable, "-c", "pass"], log)
    sup.children = [child]
    sup._spawn(child)
    assert child.proc is not None
    child.proc.wait()
    first_pid = child.pid
    child.next_start = 0.0

    # one supervise pass notices the exit and schedules a start; the next starts it
    import threading

    def stop_when_restarted() -> None:
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and child.pid == first_pid:
            time.sleep(0.05)
        sup.stop_soon()

    watcher = threading.Thread(target=stop_when_restarted)
    watcher.start()
    sup.supervise()
    watcher.join()
    assert child.pid != first_pid and child.restarts == 1
    sup.stop(grace_s=5)
