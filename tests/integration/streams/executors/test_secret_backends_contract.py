"""One contract for every secret backend the resolver reads (environment, files, Vault KV v2
over real HTTP): a stored secret resolves to its exact bytes, is used in a config, and a
missing one is a `SecretMissing` naming where it was looked for."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from flowlog.streams.executors.errors import SecretMissing
from flowlog.streams.executors.secrets import SecretResolver

from flowlog.settings import Settings
from tests.support.fake_vault import FakeVaultServer

pytestmark = pytest.mark.integration
VALUE = "s3cr3t value with spaces, ünïcode and ${braces}"


class SecretBackendContract:
    """Subclasses give ``resolver(tmp_path)`` after storing ``NAME`` = `VALUE`."""

    where = ""  # a word the SecretMissing message names for this backend

    @pytest.fixture
    def resolver(self, settings: Settings, tmp_path: Path) -> Iterator[SecretResolver]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def test_a_stored_secret_resolves_exactly(self, resolver: SecretResolver) -> None:
        assert await resolver.resolve("NAME") == VALUE

    async def test_a_config_reference_is_replaced_and_reported_used(
            self, resolver: SecretResolver) -> None:
        config, used = await resolver.resolve_config({"headers": {"k": "${secret:NAME}"}})
        assert config == {"headers": {"k": VALUE}} and used == {VALUE}

    async def test_a_missing_secret_names_where_it_looked(
            self, resolver: SecretResolver) -> None:
        with pytest.raises(SecretMissing) as err:
            await resolver.resolve("ABSENT")
        assert self.where in err.value.message and "fix" in err.value.message
        assert not err.value.is_retryable


class TestEnvironment(SecretBackendContract):
    where = "FLOWLOG_SECRET_ABSENT"

    @pytest.fixture
    def resolver(self, settings: Settings, tmp_path: Path) -> Iterator[SecretResolver]:
        s = settings.model_copy(update={"secrets_dir": tmp_path})
        yield SecretResolver(s, environ={"FLOWLOG_SECRET_NAME": VALUE})


class TestFiles(SecretBackendContract):
    where = "ABSENT"

    @pytest.fixture
    def resolver(self, settings: Settings, tmp_path: Path) -> Iterator[SecretResolver]:
        (tmp_path / "NAME").write_text(VALUE)
        s = settings.model_copy(update={"secrets_dir": tmp_path})
        yield SecretResolver(s, environ={})


class TestVault(SecretBackendContract):
    where = "Vault"

    @pytest.fixture
    async def resolver(self, settings: Settings, tmp_path: Path
                       ) -> AsyncIterator[SecretResolver]:
        with FakeVaultServer() as vault:
            vault.put("flowlog/NAME", value=VALUE)
            s = settings.model_copy(update={"secrets_dir": tmp_path, "vault_addr": vault.url,
                                            "vault_token": vault.token})
            r = SecretResolver(s, environ={})
            yield r
            await r.aclose()
