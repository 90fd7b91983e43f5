"""Settings: environment names, defaults, and a README that lists them all."""

from __future__ import annotations

import pytest

from flowlog.settings import REPO_ROOT, Settings


def test_every_setting_is_listed_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [f"FLOWLOG_{name.upper()}" for name in Settings.model_fields
               if f"`FLOWLOG_{name.upper()}`" not in readme]
    assert not missing, f"add these settings to the README's table: {missing}"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWLOG_KAFKA_PORT", "19092")
    monkeypatch.setenv("FLOWLOG_PG_PORT", "15432")
    s = Settings()
    assert s.bootstrap_servers == "127.0.0.1:19092"
    assert ":15432/" in s.pg_dsn
    monkeypatch.setenv("FLOWLOG_KAFKA_BOOTSTRAP", "broker-a:9092,broker-b:9092")
    assert Settings().bootstrap_servers == "broker-a:9092,broker-b:9092"


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWLOG_KAFKA_PORT", "not-a-port")
    with pytest.raises(ValueError, match="kafka_port"):
        Settings()
