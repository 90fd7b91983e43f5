"""Write infra/k8s/deployments.yaml: a Deployment (plus PDB, and a Service for HTTP
processes) per engine role and per process of flowlog/processes.py.

    python infra/k8s/generate.py

Run it after registering a process; tests/unit/observability/test_deployment_files.py
fails until every process has its Deployment. Per-role sizes are in ROLES; a process not
listed gets DEFAULT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).with_name("deployments.yaml")
#: the default layout (`flowlog worker all`); the classic layout (orchestrator + dispatcher)
#: is opt-in: edit the processor's Deployment's command to run it
ENGINE_ROLES = ("processor", "executor")
#: name: (replicas, cpu request, memory request, memory limit, what it is)
ROLES: dict[str, tuple[int, str, str, str, str]] = {
    "processor": (3, "500m", "512Mi", "2Gi", "decisions, their node tasks, timers and "
                  "admissions; state per partition: snapshot plus the log's tail"),
    "executor": (3, "250m", "256Mi", "1Gi", "node tasks; I/O bound, scale on node-tasks lag"),
    "projector": (2, "250m", "256Mi", "1Gi", "read models and analytics in PostgreSQL"),
    "audit": (1, "100m", "256Mi", "512Mi", "audit store"),
    "deadletters": (1, "100m", "128Mi", "512Mi", "RabbitMQ dead-letter bridge"),
    "scheduler": (1, "100m", "128Mi", "512Mi", "schedule triggers (fenced lock: one fires)"),
    "events": (2, "100m", "128Mi", "512Mi", "event triggers (routes outside events)"),
    "poller": (1, "100m", "128Mi", "512Mi", "polling triggers (one polls: fenced)"),
    "webhooks": (2, "250m", "256Mi", "512Mi", "webhook gateway (HTTP)"),
    "gateway": (2, "250m", "256Mi", "512Mi", "command gateway (HTTP)"),
    "api": (2, "250m", "256Mi", "512Mi", "query API and dashboard (HTTP)"),
}
DEFAULT = (1, "100m", "128Mi", "512Mi", "a flowlog process")
#: processes serving HTTP: (host setting, port)
HTTP = {"webhooks": ("FLOWLOG_WEBHOOK_HOST", 8081), "gateway": ("FLOWLOG_GATEWAY_HOST", 8082),
        "api": ("FLOWLOG_API_HOST", 8083)}


def names() -> list[str]:
    from flowlog.processes import PROCESSES

    return [*ENGINE_ROLES, *sorted(PROCESSES)]


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in names():
        replicas, cpu, mem, memlim, note = ROLES.get(name, DEFAULT)
        labels = {"app.kubernetes.io/name": "flowlog", "app.kubernetes.io/component": name}
        env = [{"name": "FLOWLOG_METRICS_HOST", "value": "0.0.0.0"},
               {"name": "FLOWLOG_METRICS_PORT", "value": "9464"}]
        ports: list[dict[str, Any]] = [{"name": "metrics", "containerPort": 9464}]
        if name in HTTP:
            env.append({"name": HTTP[name][0], "value": "0.0.0.0"})
            ports.append({"name": "http", "containerPort": HTTP[name][1]})
        container = {
            "name": name, "image": "flowlog:0.1.0", "args": ["worker", name],
            "envFrom": [{"configMapRef": {"name": "flowlog"}},
                        {"secretRef": {"name": "flowlog"}}],
            "env": env, "ports": ports,
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"},
                               "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"},
                              "initialDelaySeconds": 30, "periodSeconds": 10,
                              "failureThreshold": 6},
            "startupProbe": {"httpGet": {"path": "/healthz", "port": "metrics"},
                             "periodSeconds": 5, "failureThreshold": 60},
            "resources": {"requests": {"cpu": cpu, "memory": mem},
                          "limits": {"memory": memlim}},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True},
            "volumeMounts": [{"name": "state", "mountPath": "/var/lib/flowlog"}],
        }
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"flowlog-{name}", "namespace": "flowlog",
                         "labels": dict(labels), "annotations": {"flowlog.dev/role": note}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": dict(labels), "annotations": {
                        "prometheus.io/scrape": "true", "prometheus.io/port": "9464",
                        "prometheus.io/path": "/metrics"}},
                    "spec": {
                        # SIGTERM: the consumer leaves its group, partitions move at once
                        "terminationGracePeriodSeconds": 45,
                        "containers": [container],
                        "volumes": [{"name": "state", "emptyDir": {}}],
                        "topologySpreadConstraints": [{
                            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": dict(labels)}}],
                    },
                },
            },
        })
        if replicas > 1:
            docs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                         "metadata": {"name": f"flowlog-{name}", "namespace": "flowlog"},
                         "spec": {"maxUnavailable": 1,
                                  "selector": {"matchLabels": dict(labels)}}})
        if name in HTTP:
            docs.append({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": f"flowlog-{name}", "namespace": "flowlog"},
                         "spec": {"selector": dict(labels),
                                  "ports": [{"name": "http", "port": 80,
                                             "targetPort": "http"}]}})
    return docs


HEADER = """\
# Generated by infra/k8s/generate.py (run it after registering a process; edit ROLES there).
# One Deployment per flowlog role and process; every pod serves /metrics, /healthz
# (liveness) and /readyz (readiness) on port 9464. Replicas of a role beyond its topic's
# partition count sit idle: see docs/operations.md.
"""


def render() -> str:
    class NoAlias(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return HEADER + yaml.dump_all(documents(), Dumper=NoAlias, sort_keys=False,
                                  default_flow_style=False, width=100)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT} ({len(names())} roles and processes)")
