"""What every locally managed service shares: pid files, ports, waiting, log tails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flowlog.settings import Settings


class ServiceError(RuntimeError):
    """A service could not be installed or started; the message says what to do."""


@dataclass(frozen=True)
class Status:
    name: str
    port: int
    pid: int | None
    healthy: bool
    detail: str = ""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def listener_pids(port: int) -> list[int]:
    """Pids listening on a TCP port, read from /proc (no lsof/ss needed)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    pids: list[int] = []
    if not inodes:
        return pids
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.append(int(proc.name))
                    break
        except OSError:
            continue
    return pids


def describe_pid(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        cmd = "?"
    return f"pid {pid} ({cmd[:120]})"


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(cmd), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    if check and proc.returncode != 0:
        raise ServiceError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}"
            f"\n{proc.stderr[-2000:]}"
        )
    return proc


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def kill_tree(pid: int, timeout: float = 20) -> None:
    """SIGTERM the process group (started with start_new_session), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        if wait_until(lambda: not pid_alive(pid), timeout if sig == signal.SIGTERM else 5):
            return


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages (root only); a clear error otherwise."""
    if os.geteuid() != 0:
        raise ServiceError(
            f"missing packages {', '.join(packages)}: install them "
            f"(sudo apt-get install -y {' '.join(packages)}) or run `make up` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    stamp = Path("/var/lib/apt/periodic/flowlog-update-stamp")
    if not stamp.exists() or time.time() - stamp.stat().st_mtime > 86400:
        run(["apt-get", "update", "-qq"], env=env)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    # policy-rc.d keeps the packages' own system services from starting: flowlog runs
    # its own instances on its own ports and folders.
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)
    finally:
        if created:
            policy.unlink(missing_ok=True)


def which(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = Path(d) / name
        if candidate.exists():
            return str(candidate)
    return None


class Service:
    """A locally managed service: subclasses fill in install, start, health, stop."""

    name: str = "service"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / self.name
        self.pidfile = self.dir / f"{self.name}.pid"
        self.logfile = self.dir / f"{self.name}.log"

    # --- what subclasses provide ---
    @property
    def host(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    def ports(self) -> list[int]:
        return [self.port]

    def install(self) -> None:
        raise NotImplementedError

    def log_files(self) -> list[Path]:
        """Where a failed start explains itself (the service log, then its stdout)."""
        return [self.logfile, self.dir / f"{self.name}.stdout"]

    def launch(self) -> None:
        """Start the process and write the pid file."""
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def after_start(self) -> None:
        """Create users, databases, vhosts (idempotent)."""

    start_timeout: float = 90

    # --- shared behaviour ---
    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> Status:
        pid = self.pid()
        healthy = self.healthy() if port_open(self.host, self.port) else False
        detail = "" if pid or not healthy else "answering, not started by flowlog"
        return Status(self.name, self.port, pid, healthy, detail)

    def check_ports_free(self) -> None:
        for port in self.ports():
            if port_open(self.host, port):
                owners = ", ".join(describe_pid(p) for p in listener_pids(port)) or "unknown"
                raise ServiceError(
                    f"{self.name}: port {port} on {self.host} is taken by {owners}. "
                    f"Stop that process, or give flowlog another port "
                    f"(see FLOWLOG_*_PORT in the README)."
                )

    def up(self) -> str:
        """Idempotent: returns 'running' if nothing had to be done, else 'started'."""
        if self.pid() and self.healthy():
            return "running"
        if self.pid():
            # Ours but not answering yet (still starting): wait for it.
            if wait_until(self.healthy, self.start_timeout):
                self.after_start()
                return "running"
            self.down()
        elif port_open(self.host, self.port) and self.healthy():
            # Someone else's instance answers on our port: use it, as the settings say.
            self.after_start()
            return "external"
        self.install()
        self.check_ports_free()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.launch()
        if not wait_until(lambda: self.healthy() or not self.pid(), self.start_timeout) or \
                not self.healthy():
            logs = "\n".join(
                f"--- last lines of {path} ---\n{tail(path)}"
                for path in self.log_files() if path.exists()
            ) or "(it wrote no log)"
            self.down()
            raise ServiceError(
                f"{self.name} did not become healthy on port {self.port} within "
                f"{self.start_timeout:.0f}s and was stopped.\n{logs}"
            )
        self.after_start()
        return "started"

    def down(self) -> str:
        pid = self.pid()
        if not pid:
            self.pidfile.unlink(missing_ok=True)
            return "stopped"
        self.terminate(pid)
        self.pidfile.unlink(missing_ok=True)
        return "stopped now"

    def terminate(self, pid: int) -> None:
        kill_tree(pid)
