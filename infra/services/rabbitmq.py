"""RabbitMQ from the OS packages, as a node of flowlog's own (port, folders, cookie)."""

from __future__ import annotations

import os
import subprocess

from flowlog.infra.services.base import (
    Service,
    ServiceError,
    apt_install,
    port_open,
    run,
    which,
)

RABBIT_BIN = "/usr/lib/rabbitmq/bin"


class RabbitMQ(Service):
    name = "rabbitmq"
    start_timeout = 90

    @property
    def host(self) -> str:
        return self.settings.rabbitmq_host

    @property
    def port(self) -> int:
        return self.settings.rabbitmq_port

    def ports(self) -> list[int]:
        return [self.settings.rabbitmq_port, self.settings.rabbitmq_dist_port]

    @property
    def nodename(self) -> str:
        return f"flowlog-{self.settings.rabbitmq_port}@localhost"

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {
            **os.environ,
            # Our own HOME keeps the Erlang cookie apart from any system node.
            "HOME": str(d),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.settings.rabbitmq_dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": str(self.logfile),
            "RABBITMQ_PID_FILE": str(d / "rabbit.erl.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
        }

    def _bin(self, tool: str) -> str:
        found = which(tool, RABBIT_BIN)
        if not found:
            raise ServiceError(f"{tool} is missing: apt-get install -y rabbitmq-server")
        # Prefer the real scripts over /usr/sbin wrappers that switch to the rabbitmq user.
        direct = os.path.join(RABBIT_BIN, tool)
        return direct if os.path.exists(direct) else found

    def install(self) -> None:
        if not os.path.exists(os.path.join(RABBIT_BIN, "rabbitmq-server")):
            apt_install(["rabbitmq-server"])
        self._bin("rabbitmq-server")

    def launch(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            "loopback_users = none\nlog.console = false\n"
            f"listeners.tcp.default = {self.host}:{self.port}\n"
            "vm_memory_high_watermark.relative = 0.2\ndisk_free_limit.absolute = 200MB\n"
        )
        (self.dir / "advanced.config").write_text("[].\n")
        out = open(self.dir / "rabbitmq.stdout", "ab")
        proc = subprocess.Popen(
            [self._bin("rabbitmq-server")], env=self._env(), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=self.dir,
        )
        self.pidfile.write_text(str(proc.pid))

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self._bin("rabbitmqctl"), "-n", self.nodename, *args], env=self._env(),
                   check=check, timeout=60)

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        import socket

        # An AMQP 0-9-1 server answers a protocol header with its connection.start frame.
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return sock.recv(8)[:1] == b"\x01"
        except OSError:
            return False

    def after_start(self) -> None:
        if not self.pid():
            return
        s = self.settings
        vhosts = self._ctl("list_vhosts", "-q").stdout.split()
        if s.rabbitmq_vhost not in vhosts:
            self._ctl("add_vhost", s.rabbitmq_vhost)
        users = [line.split()[0] for line in self._ctl("list_users", "-q").stdout.splitlines()
                 if line.strip()]
        if s.rabbitmq_user not in users:
            self._ctl("add_user", s.rabbitmq_user, s.rabbitmq_password)
            self._ctl("set_user_tags", s.rabbitmq_user, "administrator")
        self._ctl("set_permissions", "-p", s.rabbitmq_vhost, s.rabbitmq_user, ".*", ".*", ".*")

    def terminate(self, pid: int) -> None:
        self._ctl("stop", check=False)
        super().terminate(pid)
