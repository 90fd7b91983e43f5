"""Apache Kafka 4 (KRaft, one combined broker and controller) from the Maven Central jars."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

from flowlog.infra.services.base import Service, ServiceError, port_open, run

from flowlog.settings import REPO_ROOT

INFRA_KAFKA = REPO_ROOT / "infra" / "kafka"


def java_major() -> int:
    java = shutil.which("java")
    if not java:
        raise ServiceError(
            "Java is missing: Kafka 4 needs Java 17 or newer. "
            "Install it (apt-get install -y openjdk-17-jre-headless) and run `make up` again."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise ServiceError(f"cannot read the Java version from: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


class Kafka(Service):
    name = "kafka"
    start_timeout = 120

    @property
    def host(self) -> str:
        return self.settings.kafka_host

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    @property
    def lib(self) -> Path:
        return REPO_ROOT / ".cache" / f"kafka-{self.settings.kafka_version}" / "lib"

    def install(self) -> None:
        major = java_major()
        if major < 17:
            raise ServiceError(
                f"Java {major} found; Kafka 4 needs Java 17 or newer "
                "(apt-get install -y openjdk-17-jre-headless)."
            )
        if (self.lib / f"kafka_2.13-{self.settings.kafka_version}.jar").exists():
            return
        if not shutil.which("mvn"):
            raise ServiceError(
                "Maven is missing; it fetches Kafka's jars from Maven Central "
                "(apt-get install -y maven)."
            )
        tmp = self.lib.with_name("lib.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        run([
            "mvn", "-q", "-B", "-f", str(INFRA_KAFKA / "pom.xml"),
            f"-Dkafka.version={self.settings.kafka_version}",
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ])
        tmp.rename(self.lib)

    def _classpath(self) -> str:
        return f"{self.lib}/*"

    def _write_config(self) -> Path:
        s = self.settings
        data = self.dir / "data"
        props = self.dir / "server.properties"
        template = (INFRA_KAFKA / "server.properties").read_text()
        props.write_text(template.format(
            host=s.kafka_host, port=s.kafka_port, controller_port=s.kafka_controller_port,
            log_dirs=data, partitions=s.default_partitions,
        ))
        log4j = self.dir / "log4j2.yaml"
        log4j.write_text(
            (INFRA_KAFKA / "log4j2.yaml").read_text().replace("{log_file}", str(self.logfile))
        )
        if not (data / "meta.properties").exists():
            data.mkdir(parents=True, exist_ok=True)
            cluster_id = self._random_cluster_id()
            run(["java", "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
                 "--standalone", "-t", cluster_id, "-c", str(props)])
        return props

    def _random_cluster_id(self) -> str:
        out = run(["java", "-cp", self._classpath(), "kafka.tools.StorageTool", "random-uuid"])
        return out.stdout.strip().splitlines()[-1] or str(uuid.uuid4())

    def launch(self) -> None:
        props = self._write_config()
        heap = self.settings.kafka_heap
        out = open(self.dir / "kafka.stdout", "ab")
        proc = subprocess.Popen(
            ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
             "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}",
             f"-Dkafka.logs.dir={self.dir}",
             "-cp", self._classpath(), "kafka.Kafka", str(props)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.dir,
        )
        self.pidfile.write_text(str(proc.pid))

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.bootstrap_servers,
                             "socket.timeout.ms": 2000})
        try:
            meta = admin.list_topics(timeout=3)
        except Exception:
            return False
        return bool(meta.brokers)
