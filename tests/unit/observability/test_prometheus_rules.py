"""infra/prometheus: the alert rules pass `promtool check rules`, fire on the series they
are meant for (`promtool test rules`), and the local config is valid once rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROM = Path(__file__).resolve().parents[3] / "infra" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed: `make promtool` installs the Debian "
    "package prometheus (`make test` does it first)")


def promtool(*args: str, cwd: Path = PROM) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_rules_are_valid() -> None:
    out = promtool("check", "rules", "rules.yml")
    assert "SUCCESS" in out


@needs_promtool
def test_rules_fire_on_the_series_they_watch() -> None:
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


@needs_promtool
def test_every_alert_has_a_summary_and_uses_only_our_metric_names() -> None:
    import yaml

    from flowlog.observability import metrics

    ours = {m._name for m in vars(metrics).values() if hasattr(m, "_name")}
    rules = [r for g in yaml.safe_load((PROM / "rules.yml").read_text())["groups"]
             for r in g["rules"]]
    assert {r["alert"] for r in rules if "alert" in r} >= {
        "FlowlogTaskErrorRateHigh", "FlowlogConsumerLagHigh", "FlowlogOpenIncidents",
        "FlowlogProjectionLagHigh", "FlowlogDecisionLatencyP99OverSLO"}
    for rule in rules:
        if "alert" in rule:
            assert rule["annotations"]["summary"], rule["alert"]
        for name in set(re.findall(r"\bflowlog_[a-z_]+", rule["expr"])):
            base = name
            for suffix in ("_bucket", "_count", "_sum", "_total"):
                base = base.removesuffix(suffix)
            assert base in ours, f"{rule.get('alert') or rule.get('record')}: {name}"


@needs_promtool
def test_rendered_local_config_is_valid(tmp_path: Path) -> None:
    text = (PROM / "prometheus.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("__STATE_DIR__", str(tmp_path))
                      .replace("__RULES__", str(PROM / "rules.yml")))
    assert "SUCCESS" in promtool("check", "config", str(config), cwd=tmp_path)


@needs_promtool
def test_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    text = (PROM.parent / "compose" / "prometheus.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules.yml", str(PROM / "rules.yml")))
    assert "SUCCESS" in promtool("check", "config", str(config), cwd=tmp_path)
