"""PostgreSQL 15 from the OS packages, in a data folder of flowlog's own."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
from pathlib import Path

from flowlog.infra.services.base import Service, ServiceError, apt_install, port_open, run


def pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class Postgres(Service):
    name = "postgres"
    start_timeout = 60

    @property
    def host(self) -> str:
        return self.settings.pg_host

    @property
    def port(self) -> int:
        return self.settings.pg_port

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root: run its tools as the `postgres` OS user.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def install(self) -> None:
        if pg_bin() is None:
            apt_install(["postgresql", "postgresql-contrib"])
        if pg_bin() is None:
            raise ServiceError("PostgreSQL is missing: apt-get install -y postgresql")

    def _bin(self, tool: str) -> str:
        base = pg_bin()
        assert base is not None
        return str(base / tool)

    def launch(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.settings.state_dir, self.dir):
                path.chmod(0o755)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.dir / "pwfile"
            pwfile.write_text(self.settings.pg_password + "\n")
            if os.geteuid() == 0:
                os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
            run(self._as_owner([
                self._bin("initdb"), "-D", str(self.data), "-U", self.settings.pg_superuser,
                "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                "-E", "UTF8", "--locale=C.UTF-8",
            ]))
            pwfile.unlink()
            conf = self.data / "postgresql.conf"
            with conf.open("a") as f:
                # Tuned for a 2-core development box: throughput over durability of the
                # last few ms (the log of record is Kafka; read models are rebuildable).
                f.write(
                    "\nshared_buffers = 512MB\nsynchronous_commit = off\n"
                    "max_connections = 200\nfsync = on\nwal_level = replica\n"
                    "shared_preload_libraries = ''\n"
                )
        run(self._as_owner([
            self._bin("pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w",
            "-t", "60", "-o",
            f"-p {self.port} -c listen_addresses={self.host} -k {self.dir}", "start",
        ]), check=False)
        pid_line = (self.data / "postmaster.pid")
        if pid_line.exists():
            self.pidfile.write_text(pid_line.read_text().splitlines()[0])

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        proc = run([self._bin("pg_isready"), "-h", self.host, "-p", str(self.port)],
                   check=False, timeout=10) if pg_bin() else None
        return proc is not None and proc.returncode == 0

    def after_start(self) -> None:
        if not self.pid():
            return  # an external server: its owner manages users and databases
        s = self.settings
        psql = self._as_owner([self._bin("psql"), "-h", str(self.dir), "-p", str(self.port),
                               "-U", s.pg_superuser, "-d", "postgres", "-v",
                               "ON_ERROR_STOP=1", "-tAc"])
        exists = run([*psql, f"SELECT 1 FROM pg_roles WHERE rolname = '{s.pg_user}'"]).stdout
        if not exists.strip():
            run([*psql, f"CREATE ROLE {s.pg_user} LOGIN CREATEDB PASSWORD "
                        f"'{s.pg_password}'"])
        exists = run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{s.pg_database}'"])
        if not exists.stdout.strip():
            run([*psql, f"CREATE DATABASE {s.pg_database} OWNER {s.pg_user}"])

    def terminate(self, pid: int) -> None:
        run(self._as_owner([self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                            "stop"]), check=False)
        super().terminate(pid)
