"""Redis from the OS packages, on flowlog's own port and folder."""

from __future__ import annotations

import subprocess

from flowlog.infra.services.base import Service, ServiceError, apt_install, port_open, which


class Redis(Service):
    name = "redis"
    start_timeout = 30

    @property
    def host(self) -> str:
        return self.settings.redis_host

    @property
    def port(self) -> int:
        return self.settings.redis_port

    def install(self) -> None:
        if not which("redis-server"):
            apt_install(["redis-server"])
        if not which("redis-server"):
            raise ServiceError("redis-server is missing: apt-get install -y redis-server")

    def launch(self) -> None:
        proc = subprocess.Popen(
            [str(which("redis-server")), "--port", str(self.port), "--bind", self.host,
             "--dir", str(self.dir), "--logfile", str(self.logfile), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pidfile.write_text(str(proc.pid))

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        import redis

        try:
            return bool(redis.Redis(host=self.host, port=self.port, socket_timeout=2).ping())
        except redis.RedisError:
            return False
