"""`flowlog run` (`make run`): the whole system on one machine, one OS process per part.

What it does, in order: the services (`flowlog up`), the database schema (`flowlog db
migrate`), the topics, the local demo server of `examples/` (tools' outside systems and,
with no model keys, a stand-in model), every `examples/*.yaml` applied, then one OS
process per engine role (processor, executor: the default layout) and per process registered in
`flowlog/processes.py` (read now, so processes added later are included), each with its
own /metrics, /healthz and /readyz. It waits until every process is ready, runs one demo
execution to its end, prints where to look, and then supervises: a process that dies is
started again (back-off up to 30 s). Ctrl-C, SIGTERM or `flowlog stop` stops every process
it started (SIGTERM, then SIGKILL after a grace period), nothing else.

Its own state: `<state_dir>/run/supervisor.json` (its pid and its children's), child logs
in `<state_dir>/logs/<process>.log` (JSON lines).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from flowlog.settings import REPO_ROOT, Settings

#: the default layout (`flowlog worker all`), one OS process per role
ENGINE_ROLES = ("processor", "executor")
DEMO_WORKFLOW = ("fan-out-fan-in", {"symbol": "ACME"})
DEMO_KEY = "demo-key-not-a-secret"
#: The examples' secrets, given demo values when neither the environment nor the secrets
#: folder has them (the demo server ignores them).
DEMO_SECRETS = ("HELPDESK_TOKEN", "PARTNER_KEY")


class SupervisorError(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def supervisor_file(settings: Settings) -> Path:
    return settings.state_dir / "run" / "supervisor.json"


def metrics_dir(settings: Settings) -> Path:
    return settings.state_dir / "run" / "metrics"


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any] | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return 0, None


class Supervisor:
    def __init__(self, settings: Settings, *, scale: dict[str, int] | None = None,
                 demo: bool = True, console: Console | None = None) -> None:
        self.settings = settings
        self.scale = scale or {}
        self.demo = demo
        self.console = console or Console(stderr=True, highlight=False)
        self.children: list[Child] = []
        self.env: dict[str, str] = dict(os.environ)
        self.notes: list[str] = []
        self.demo_url: str | None = None
        self.prometheus_url: str | None = None
        self._stopping = threading.Event()

    # --- preparing -----------------------------------------------------------------------
    def prepare(self, *, services: bool = True) -> None:
        """Services, schema, topics, the demo server's settings, the examples."""
        from flowlog.infra.services import manager
        from flowlog.projections.migrate import migrate
        from flowlog.streams.runtime.kafka import ensure_topics

        if services:
            manager.up(self.settings)
        at = migrate(self.settings, None)
        self.console.print(f"[green]✓[/] schema {self.settings.pg_schema} at {', '.join(at)}")
        ensure_topics(self.settings)
        self.console.print(f"[green]✓[/] topics {self.settings.topic_prefix}*")
        self._demo_environment()

    def _demo_environment(self) -> None:
        try:
            import flowlog_examples  # noqa: F401
        except ImportError:
            self.notes.append("the examples plugin is not installed (pip install -e examples):"
                              " examples that call its tools will fail")
            return
        self.demo_url = f"http://127.0.0.1:{self.settings.demo_port}"
        s = self.settings
        if not (s.openai_api_key or s.anthropic_api_key):
            self.env.update({
                "FLOWLOG_OPENAI_BASE_URL": f"{self.demo_url}/v1",
                "FLOWLOG_ANTHROPIC_BASE_URL": self.demo_url,
                "FLOWLOG_OPENAI_API_KEY": DEMO_KEY, "FLOWLOG_ANTHROPIC_API_KEY": DEMO_KEY})
            self.notes.append(
                f"no FLOWLOG_OPENAI_API_KEY or FLOWLOG_ANTHROPIC_API_KEY: agent nodes talk to "
                f"the local DEMO model at {self.demo_url} (canned answers, NOT a language "
                "model); set a key to use a real one")
        from flowlog.streams.executors.secrets import env_name

        demo_secrets = [name for name in DEMO_SECRETS if env_name(name) not in self.env
                        and not (s.secrets_folder / name).exists()]
        for name in demo_secrets:
            self.env[env_name(name)] = f"demo-{name.lower()}"
        if demo_secrets:
            self.notes.append(f"demo values for the examples' secrets {', '.join(demo_secrets)}"
                              f" (set {env_name(demo_secrets[0])} or a file in "
                              f"{s.secrets_folder} for real ones)")

    def apply_examples(self) -> list[str]:
        from flowlog.streams.runtime.tools import apply_definition

        out = []
        for path in sorted((REPO_ROOT / "examples").glob("*.yaml")):
            try:
                out.append(str(apply_definition(self.settings, path)))
            except Exception as exc:  # one broken example must not stop the system
                out.append(f"{path.name}: NOT applied: {exc}")
        for line in out:
            self.console.print(f"  {line}")
        return out

    # --- processes -----------------------------------------------------------------------
    def plan(self) -> list[Child]:
        """The processes to run: demo server, engine roles, registered processes."""
        from flowlog.processes import PROCESSES

        logs = self.settings.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        py = sys.executable
        children = []
        if self.demo_url is not None:
            port = self.demo_url.rsplit(":", 1)[1]
            children.append(Child("demo-server", [py, "-m", "flowlog_examples.demo_server",
                                                  "--port", port], logs / "demo-server.log"))
        prometheus = self._prometheus()
        if prometheus is not None:
            children.append(Child("prometheus", prometheus, logs / "prometheus.log"))
        for name in [*ENGINE_ROLES, *sorted(PROCESSES)]:
            for i in range(max(1, self.scale.get(name, 1))):
                label = name if i == 0 else f"{name}-{i + 1}"
                children.append(Child(label, [py, "-m", "flowlog.cli", "worker", name],
                                      logs / f"{label}.log"))
        return children

    def _prometheus(self) -> list[str] | None:
        """Prometheus's command line, when it is installed and wanted (its config rendered
        from infra/prometheus/prometheus.yml into the state folder)."""
        port = self.settings.prometheus_port
        binary = shutil.which("prometheus")
        if not port or binary is None:
            if port:
                self.notes.append("Prometheus is not installed (Debian package prometheus: "
                                  "`make promtool`); each process still serves /metrics")
            return None
        folder = self.settings.state_dir / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        template = (REPO_ROOT / "infra" / "prometheus" / "prometheus.yml").read_text()
        config = folder / "prometheus.yml"
        config.write_text(template.replace("__STATE_DIR__", str(self.settings.state_dir))
                          .replace("__RULES__", str(REPO_ROOT / "infra/prometheus/rules.yml")))
        self.prometheus_url = f"http://127.0.0.1:{port}"
        return [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=2d"]

    def start(self) -> None:
        self.children = self.plan()
        for child in self.children:
            self._spawn(child)
        self._write_state()

    def _spawn(self, child: Child) -> None:
        if child.log_file is None:
            child.log_file = child.log_path.open("ab")
        # a session of its own: Ctrl-C reaches the supervisor only, which stops the
        # children in order (and none is left half-stopped by a second signal)
        child.proc = subprocess.Popen(child.argv, cwd=REPO_ROOT, env=self.env,
                                      stdout=child.log_file, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        child.started_at = time.monotonic()

    def _write_state(self) -> None:
        path = supervisor_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "children": {
            c.name: c.pid for c in self.children if c.running()}}, indent=1))
        tmp.replace(path)

    def endpoints(self) -> dict[int, str]:
        """pid -> metrics base URL, from the processes' run files."""
        from flowlog.observability.server import read_run_files

        return {e["pid"]: e["url"] for e in read_run_files(metrics_dir(self.settings))}

    def wait_ready(self, timeout: float = 180.0) -> list[str]:
        """Until every flowlog process answers /readyz 200; returns those that did not (an
        engine role that exits while starting is an error; another process is reported)."""
        deadline = time.monotonic() + timeout
        workers = [c for c in self.children if c.name not in ("demo-server", "prometheus")]
        pending = {c.name for c in workers}
        failed: list[str] = []
        while pending and time.monotonic() < deadline and not self._stopping.is_set():
            urls = self.endpoints()
            for c in workers:
                if c.name not in pending:
                    continue
                if not c.running():
                    message = (f"{c.name} exited with {c.proc.returncode if c.proc else '?'} "
                               f"while starting; its log: {c.log_path}\n{_tail(c.log_path)}")
                    if c.name.split("-")[0] in ENGINE_ROLES:
                        raise SupervisorError(message)
                    # another area's process: report it, keep the rest (supervise retries it)
                    self.console.print(f"[red]{message}[/]")
                    pending.discard(c.name)
                    failed.append(c.name)
                    continue
                url = urls.get(c.pid or -1)
                if url and _get_json(url + "/readyz")[0] == 200:
                    pending.discard(c.name)
                    self.console.print(f"[green]✓[/] {c.name:<14} ready  {url}/metrics")
            if pending:
                self._stopping.wait(0.5)
        if self.demo_url is not None:
            demo_deadline = time.monotonic() + 30
            while _get_json(self.demo_url + "/v1/none")[0] == 0 and \
                    time.monotonic() < demo_deadline:
                time.sleep(0.2)
        return sorted(pending) + failed

    def run_demo(self, within: float = 120.0) -> tuple[str, list[dict[str, Any]]]:
        """Trigger the demo workflow and follow it to its terminal event."""
        import asyncio

        from flowlog.streams.runtime import tools

        workflow, input_ = DEMO_WORKFLOW
        execution_id = tools.trigger(self.settings, workflow, input_)
        self.console.print(f"demo: {workflow} {json.dumps(input_)} → execution {execution_id}")
        events = asyncio.run(tools.collect(self.settings, execution_id, follow=True,
                                           within=within))
        return execution_id, events

    def supervise(self) -> None:
        """Restart children that die, until `stop_soon` (a signal) is called."""
        while not self._stopping.is_set():
            now = time.monotonic()
            changed = False
            for c in self.children:
                if c.running():
                    if now - c.started_at > 60:
                        c.restarts = 0  # a minute up: the back-off starts over
                    continue
                if c.next_start == 0.0:
                    delay = min(30.0, 2.0 ** c.restarts)
                    c.next_start = now + delay
                    self.console.print(
                        f"[red]{c.name} exited with {c.proc.returncode if c.proc else '?'}"
                        f"[/]; starting it again in {delay:.0f}s (log: {c.log_path})")
                elif now >= c.next_start:
                    c.restarts += 1
                    c.next_start = 0.0
                    self._spawn(c)
                    changed = True
            if changed:
                self._write_state()
            self._stopping.wait(0.5)

    def stop_soon(self, *_: Any) -> None:
        self._stopping.set()

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM every child, wait up to ``grace_s``, SIGKILL what is left."""
        self._stopping.set()
        alive = [c for c in self.children if c.running()]
        for c in alive:
            assert c.proc is not None
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for c in alive:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.console.print(f"[yellow]{c.name} did not stop in {grace_s:.0f}s: "
                                   "killing it[/]")
                c.proc.kill()
                c.proc.wait(timeout=10)
        for c in self.children:
            if c.log_file is not None:
                c.log_file.close()
                c.log_file = None
        supervisor_file(self.settings).unlink(missing_ok=True)
        self.console.print(f"stopped {len(alive)} processes")


def stop_running(settings: Settings, timeout: float = 60.0) -> str:
    """`flowlog stop`: signal the running supervisor and wait for it to finish.

    If the supervisor is gone but its children are not (it was killed), they are
    signalled directly.
    """
    path = supervisor_file(settings)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return "nothing to stop (no flowlog run is recorded in " f"{path})"
    pid = int(state["pid"])
    targets = [pid] if _alive(pid) else [int(p) for p in state.get("children", {}).values()
                                         if p and _alive(int(p))]
    for p in targets:
        os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in targets) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in targets if _alive(p)]
    if left:
        return f"still running after {timeout:.0f}s: pids {left}"
    path.unlink(missing_ok=True)
    return f"stopped (pids {targets})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
