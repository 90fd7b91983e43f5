"""The HTTP endpoint of one process: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

It runs on a daemon thread (``ThreadingHTTPServer``), so a scrape never waits for the
process's event loop, and the loop never waits for a scrape.

* ``/healthz``: 200 while the process's event loop answers (a heartbeat task updates a
  timestamp; older than ``stall_after_s`` = 503: a stuck loop is a dead process to a
  liveness probe).
* ``/readyz``: 200 once the process said it is ready (its roles consume) and has not
  failed; 503 before and after. The body is JSON either way: process, pid, roles, uptime,
  ready, consumer lag per group, the last ERROR log line. ``flowlog status`` reads it.
* ``/metrics``: the prometheus-client registry in the text format.

Ports: ``FLOWLOG_METRICS_PORT=0`` (the default) lets the OS choose a free port, so any
number of processes share a machine; a fixed port suits one process per container. Each
process writes ``<state_dir>/run/metrics/<process>-<pid>.json`` in Prometheus's
``file_sd`` format (the target and its labels): Prometheus scrapes whatever runs, and
``flowlog status`` finds every process there. The file is removed on a clean stop.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


class Health:
    """What /healthz and /readyz report; updated by the process."""

    def __init__(self, process: str, roles: list[str], stall_after_s: float = 30.0) -> None:
        self.process = process
        self.roles = roles
        self.started = time.time()
        self.beat = time.monotonic()
        self.stall_after_s = stall_after_s
        self.is_ready = False
        self.failure: str | None = None
        self.extra: Callable[[], dict[str, Any]] | None = None

    def alive(self) -> bool:
        return time.monotonic() - self.beat < self.stall_after_s

    def ready(self) -> bool:
        return self.is_ready and self.failure is None and self.alive()

    def report(self) -> dict[str, Any]:
        from flowlog.observability.logs import LAST_ERROR

        body: dict[str, Any] = {
            "process": self.process, "pid": os.getpid(), "roles": self.roles,
            "uptime_s": round(time.time() - self.started, 1), "ready": self.ready(),
            "alive": self.alive(), "failure": self.failure, "last_error": LAST_ERROR.last,
        }
        if self.extra is not None:
            try:
                body.update(self.extra())
            except Exception as exc:  # a report must answer even if a probe breaks
                body["report_error"] = repr(exc)
        return body


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"event loop stalled\n",
                           "text/plain")
            elif path == "/readyz":
                body = health.report()
                self._send(200 if body["ready"] else 503,
                           json.dumps(body, default=str).encode(), "application/json")
            else:
                self._send(404, b"try /metrics, /healthz or /readyz\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
            return

    return Handler


class MetricsServer:
    """The endpoint, started on ``host:port`` (0: a free port), and its run file."""

    def __init__(self, health: Health, host: str, port: int, run_dir: Path | None) -> None:
        self.health = health
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(health))
        except OSError as exc:
            raise OSError(
                f"cannot serve /metrics of {health.process} on {host}:{port}: {exc}; set "
                "FLOWLOG_METRICS_PORT=0 (a free port) or another port, or "
                "FLOWLOG_METRICS_ENABLED=false") from exc
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name=f"metrics-{health.process}")
        self.thread.start()
        self.run_file: Path | None = None
        if run_dir is not None:
            self.run_file = write_run_file(run_dir, health.process, host, self.port,
                                           health.roles)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.run_file is not None:
            self.run_file.unlink(missing_ok=True)


def write_run_file(run_dir: Path, process: str, host: str, port: int, roles: list[str]) -> Path:
    """``<run_dir>/<process>-<pid>.json``: one Prometheus file_sd target group."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    path = run_dir / f"{process}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{
        "targets": [f"{target_host}:{port}"],
        "labels": {"process": process, "pid": str(os.getpid()), "roles": ",".join(roles)},
    }], indent=1))
    tmp.replace(path)  # atomic: Prometheus never reads half a file
    return path


def read_run_files(run_dir: Path) -> list[dict[str, Any]]:
    """Every process's run file: {process, pid, url, roles, file, alive (pid exists)}."""
    out = []
    for path in sorted(run_dir.glob("*.json")):
        try:
            group = json.loads(path.read_text())[0]
            pid = int(group["labels"]["pid"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
        out.append({"process": group["labels"]["process"], "pid": pid,
                    "url": f"http://{group['targets'][0]}",
                    "roles": group["labels"].get("roles", ""), "file": path,
                    "alive": _pid_alive(pid)})
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
