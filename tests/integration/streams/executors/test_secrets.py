"""Secret resolution from the environment, files and a (fake, real-HTTP) Vault KV v2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flowlog.streams.executors.errors import ExecutorError, SecretMissing
from flowlog.streams.executors.secrets import SecretResolver

from flowlog.settings import Settings
from tests.support.fake_vault import FakeVaultServer


@pytest.fixture
def vault() -> Iterator[FakeVaultServer]:
    with FakeVaultServer() as server:
        yield server


def resolver(settings: Settings, tmp_path: Path, env: dict[str, str] | None = None,
             **update: object) -> SecretResolver:  # fmt: skip
    s = settings.model_copy(update={"secrets_dir": tmp_path, **update})
    return SecretResolver(s, environ=env or {})


async def test_environment_then_file(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "API_TOKEN").write_text("from-file\n")
    r = resolver(settings, tmp_path, {"FLOWLOG_SECRET_API_TOKEN": "from-env"})
    assert await r.resolve("API_TOKEN") == "from-env"
    r = resolver(settings, tmp_path)
    assert await r.resolve("API_TOKEN") == "from-file"
    config, used = await r.resolve_config({"h": {"a": "Bearer ${secret:API_TOKEN}"}})
    assert config == {"h": {"a": "Bearer from-file"}} and used == {"from-file"}


async def test_file_names_cannot_escape_the_folder(settings: Settings, tmp_path: Path) -> None:
    (tmp_path.parent / "outside").write_text("nope")
    r = resolver(settings, tmp_path)
    with pytest.raises(SecretMissing):
        await r.resolve("../outside")


async def test_vault_kv2(settings: Settings, tmp_path: Path, vault: FakeVaultServer) -> None:
    vault.put("flowlog/PARTNER_KEY", value="pk-vault")
    vault.put("teams/billing", stripe="sk-stripe")
    r = resolver(settings, tmp_path, vault_addr=vault.url, vault_token=vault.token)
    try:
        assert await r.resolve("PARTNER_KEY") == "pk-vault"
        assert await r.resolve("teams/billing#stripe") == "sk-stripe"
        assert await r.resolve("PARTNER_KEY") == "pk-vault"  # cached
        assert vault.reads.count("flowlog/PARTNER_KEY") == 1
        with pytest.raises(SecretMissing) as err:
            await r.resolve("ABSENT")
        assert "Vault" in err.value.message and "FLOWLOG_SECRET_ABSENT" in err.value.message
    finally:
        await r.aclose()


async def test_vault_refusal_and_outage(
    settings: Settings, tmp_path: Path, vault: FakeVaultServer
) -> None:
    vault.put("flowlog/K", value="v")
    r = resolver(settings, tmp_path, vault_addr=vault.url, vault_token="wrong")
    try:
        with pytest.raises(SecretMissing, match=r"refused.*FLOWLOG_VAULT_TOKEN"):
            await r.resolve("K")
    finally:
        await r.aclose()
    r = resolver(settings, tmp_path, vault_addr="http://127.0.0.1:1", vault_token="t")
    try:
        with pytest.raises(ExecutorError) as err:
            await r.resolve("K")
        assert err.value.type == "secret_backend_error" and err.value.is_retryable
    finally:
        await r.aclose()
