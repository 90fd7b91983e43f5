"""`flowlog topics apply` on the real broker: idempotent, and drift is reported."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from flowlog.schemas.topics import TopicCatalog, apply_topics, describe_cluster
from typer.testing import CliRunner

from flowlog.cli import app
from flowlog.settings import Settings

pytestmark = pytest.mark.integration


def _env(bootstrap: str, settings: Settings) -> dict[str, str]:
    return {"FLOWLOG_KAFKA_BOOTSTRAP": bootstrap, "FLOWLOG_TOPIC_PREFIX": settings.topic_prefix}


def test_apply_twice_second_run_changes_nothing(
    kafka_bootstrap: str, settings: Settings, cleanup_topics: None
) -> None:
    catalog = TopicCatalog.from_settings(settings)
    first = apply_topics(catalog, kafka_bootstrap)
    assert sorted(c.topic for c in first) == sorted(s.name for s in catalog)
    assert {c.kind for c in first} == {"create"} and all(c.applied for c in first)
    assert apply_topics(catalog, kafka_bootstrap) == []
    states = describe_cluster(catalog, kafka_bootstrap)
    for spec in catalog:
        assert states[spec.name].partitions == spec.partitions
        assert states[spec.name].config["retention.ms"] == spec.config["retention.ms"]
        assert states[spec.name].config["cleanup.policy"] == "delete"


def test_cli_apply_twice_prints_no_changes(
    kafka_bootstrap: str, settings: Settings, cleanup_topics: None
) -> None:
    runner = CliRunner()
    env = _env(kafka_bootstrap, settings)
    first = runner.invoke(app, ["topics", "apply"], env=env)
    assert first.exit_code == 0, first.output
    assert "create" in first.output
    second = runner.invoke(app, ["topics", "apply"], env=env)
    assert second.exit_code == 0, second.output
    assert "no changes" in second.output
    described = runner.invoke(app, ["topics", "describe"], env=env)
    assert described.exit_code == 0 and "drift" not in described.output


def test_drift_is_reported_and_partitions_grow_only_when_asked(
    kafka_bootstrap: str, settings: Settings, cleanup_topics: None
) -> None:
    catalog = TopicCatalog.from_settings(settings)
    triggers = catalog.name("triggers")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(triggers, 2, 1, config={"retention.ms": "1000"})]
                        )[triggers].result(timeout=30)

    changes = apply_topics(catalog, kafka_bootstrap)
    drift = [c for c in changes if c.topic == triggers]
    assert {(c.kind, c.applied) for c in drift} == {("partitions", False), ("config", True)}
    assert "has 2, catalog says 6" in next(c.detail for c in drift if c.kind == "partitions")

    # the config was fixed; the partition drift stays and is reported again, exit code 2
    again = apply_topics(catalog, kafka_bootstrap)
    assert [(c.topic, c.kind, c.applied) for c in again] == [(triggers, "partitions", False)]
    result = CliRunner().invoke(app, ["topics", "apply"], env=_env(kafka_bootstrap, settings))
    assert result.exit_code == 2
    assert "drift" in result.output and "partitions" in result.output

    grown = apply_topics(catalog, kafka_bootstrap, grow_partitions=True)
    assert [(c.kind, c.applied) for c in grown] == [("partitions", True)]
    assert apply_topics(catalog, kafka_bootstrap) == []
    assert describe_cluster(catalog, kafka_bootstrap)[triggers].partitions == 6


def test_more_partitions_than_the_catalog_is_reported_not_changed(
    kafka_bootstrap: str, settings: Settings, cleanup_topics: None
) -> None:
    big = TopicCatalog.build(settings.topic_prefix, default_partitions=8)
    apply_topics(big, kafka_bootstrap)
    changes = apply_topics(TopicCatalog.from_settings(settings), kafka_bootstrap, dry_run=True)
    assert changes and all(c.kind == "partitions" and not c.applied for c in changes)
    assert all("cannot shrink" in c.detail for c in changes)
