"""Dockerfile, infra/compose and infra/k8s: valid against their schemas, and consistent
with the code (every role and process deployed, probes on the endpoints the processes
serve, autoscaling bounded by the partitions, consumer groups and topics that exist)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from flowlog.streams.runtime.worker import ROLES

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "infra" / "k8s"
COMPOSE = REPO / "infra" / "compose" / "docker-compose.yml"
COMPOSE_WHEEL = REPO / ".cache" / "compose-spec" / "docker_compose-1.29.2-py2.py3-none-any.whl"
ENGINE_ROLES = ROLES  # the default layout, `flowlog worker all`
GROUPS = {"processor": "processor", "executor": "executor"}


def _processes() -> set[str]:
    from flowlog.processes import PROCESSES

    return {*ENGINE_ROLES, *PROCESSES}


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] == kind]


# --- Compose ------------------------------------------------------------------------------

def compose_schema() -> dict[str, Any]:
    if not COMPOSE_WHEEL.exists():
        pytest.skip("the Compose specification schema is not fetched: `make compose-schema` "
                    "(`make test` does it first)")
    with zipfile.ZipFile(COMPOSE_WHEEL) as z:
        schema: dict[str, Any] = json.loads(z.read("compose/config/compose_spec.json"))
    schema.pop("$schema", None)  # draft 2019-09 by its URL; the validator is chosen below
    return schema


def test_compose_file_passes_the_compose_spec_schema() -> None:
    schema = compose_schema()
    validator = jsonschema.Draft201909Validator(schema)
    doc = yaml.safe_load(COMPOSE.read_text())
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    broken = {**doc, "services": {**doc["services"],
                                  "processor": {**doc["services"]["processor"],
                                                   "replica": 2}}}
    assert list(validator.iter_errors(broken)), "the schema must reject an unknown key"


def test_compose_runs_every_role_and_process_with_probes() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    for name in _processes():
        assert name in services, f"infra/compose lacks a service for {name}"
        svc = services[name]
        assert svc["command"] == ["worker", name]
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    for infra in ("kafka", "postgres", "redis", "rabbitmq", "prometheus", "grafana"):
        assert infra in services
    assert "timescale" in services["postgres"]["image"]


# --- Kubernetes ---------------------------------------------------------------------------

def test_core_manifests_pass_the_kubernetes_schemas_strictly() -> None:
    import kubernetes_validate

    core = [d for d in k8s_docs() if "." not in d["apiVersion"].split("/")[0]
            or d["apiVersion"].split("/")[0].endswith(".k8s.io")]
    assert {d["kind"] for d in core} >= {"Deployment", "ConfigMap", "Secret", "Job",
                                          "HorizontalPodAutoscaler", "Service", "Namespace"}
    for doc in core:
        kubernetes_validate.validate(doc, "1.30", strict=True)  # raises with the path
    bad = json.loads(json.dumps(by_kind("Deployment")[0]))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30", strict=True)


def test_deployments_file_is_what_the_generator_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert (K8S / "deployments.yaml").read_text() == generate.render(), (
        "infra/k8s/deployments.yaml is out of date: run python infra/k8s/generate.py")


def test_every_role_and_process_has_a_deployment_with_probes() -> None:
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    for name in _processes():
        dep = deployments.get(f"flowlog-{name}")
        assert dep is not None, f"infra/k8s lacks a Deployment for {name}"
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["worker", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["FLOWLOG_METRICS_HOST"] == "0.0.0.0"
        assert container["ports"][0]["containerPort"] == int(env["FLOWLOG_METRICS_PORT"])


SCALED_OBJECT = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "spec": {
            "type": "object", "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"type": {"const": "kafka"}, "metadata": {
                        "type": "object",
                        "required": ["bootstrapServers", "consumerGroup", "topic",
                                     "lagThreshold"],
                        "additionalProperties": {"type": "string"}}}}},
            }},
    },
}
KAFKA_TOPIC = {
    "type": "object", "required": ["metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "metadata": {"type": "object", "required": ["name", "labels"], "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}}},
        "spec": {"type": "object", "required": ["topicName", "partitions", "replicas"],
                 "properties": {"partitions": {"type": "integer", "minimum": 1},
                                "replicas": {"type": "integer", "minimum": 1},
                                "config": {"type": "object",
                                           "additionalProperties": {"type": "string"}}}},
    },
}


def test_autoscaling_follows_lag_of_real_groups_and_stays_within_partitions() -> None:
    from flowlog.schemas.topics import TopicCatalog

    from flowlog.settings import Settings

    config = by_kind("ConfigMap")[0]["data"]
    partitions = int(config["FLOWLOG_DEFAULT_PARTITIONS"])
    prefix = config["FLOWLOG_TOPIC_PREFIX"]
    catalog = TopicCatalog.from_settings(Settings(topic_prefix=prefix,
                                                  default_partitions=partitions))
    topics = {t["spec"]["topicName"]: t for t in by_kind("KafkaTopic")}
    assert set(topics) == {spec.name for spec in catalog.topics.values()}
    for t in topics.values():
        jsonschema.validate(t, KAFKA_TOPIC)
        assert t["spec"]["partitions"] == catalog.topics[
            t["spec"]["topicName"].removeprefix(prefix)].partitions
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    scaled = by_kind("ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} >= {
        "flowlog-executor", "flowlog-processor"}
    for so in scaled:
        jsonschema.validate(so, SCALED_OBJECT)
        target = so["spec"]["scaleTargetRef"]["name"]
        assert target in deployments
        role = target.removeprefix("flowlog-")
        for trigger in so["spec"]["triggers"]:
            meta = trigger["metadata"]
            assert meta["consumerGroup"] == prefix + GROUPS[role]
            assert meta["topic"] in topics
            # a group member beyond the partition count gets nothing to do
            assert so["spec"]["maxReplicaCount"] <= topics[meta["topic"]]["spec"]["partitions"]
    (cluster,) = by_kind("Kafka")
    assert cluster["spec"]["kafka"]["config"]["num.partitions"] == partitions
    (pool,) = by_kind("KafkaNodePool")
    assert all(t["spec"]["replicas"] <= pool["spec"]["replicas"] for t in topics.values())


def test_dockerfile_serves_metrics_where_probes_look() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "FLOWLOG_METRICS_HOST=0.0.0.0" in text and "FLOWLOG_METRICS_PORT=9464" in text
    assert "/healthz" in text and 'ENTRYPOINT ["flowlog"]' in text
    assert "./examples" in text  # the examples plugin: the init job applies the examples


def test_grafana_dashboard_queries_only_our_series() -> None:
    import re

    from flowlog.observability import metrics

    ours = {m._name for m in vars(metrics).values() if hasattr(m, "_name")}
    dash = json.loads((COMPOSE.parent / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\bflowlog_[a-z_]+", expr):
            base = name
            for suffix in ("_bucket", "_count", "_sum", "_total"):
                base = base.removesuffix(suffix)
            assert base in ours, expr
