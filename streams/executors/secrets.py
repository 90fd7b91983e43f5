"""`${secret:NAME}` resolution at run time: environment, secret files, HashiCorp Vault.

Lookup order: `FLOWLOG_SECRET_<NAME>` (NAME upper-cased, other than A-Z0-9 → `_`), then the
file `<secrets_dir>/<NAME>`, then Vault KV v2 (when `FLOWLOG_VAULT_ADDR` and
`FLOWLOG_VAULT_TOKEN` are set): `GET {addr}/v1/{mount}/data/{prefix}/{NAME}`, field `value`;
a name `path/to/secret#field` reads that path and field instead. Values never leave this
module except into the task's config; `Redactor` scrubs them from messages and outputs.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from flowlog.streams.executors.errors import SecretBackendFailed, SecretMissing

from flowlog.settings import Settings

# `$${secret:NAME}` is the escaped, literal text `${secret:NAME}` (templates escape what
# they insert from data; see flowlog.aggregates.expressions); only `${secret:NAME}` resolves.
SECRET_REF = re.compile(r"\$(\$?)\{secret:([^}]*)\}")
_ENV_UNSAFE = re.compile(r"[^A-Z0-9]")
REDACTED = "[redacted]"


def env_name(name: str) -> str:
    return "FLOWLOG_SECRET_" + _ENV_UNSAFE.sub("_", name.upper())


def find_refs(value: Any) -> set[str]:
    """Every secret name referenced anywhere in a JSON value."""
    found: set[str] = set()
    _walk_refs(value, found)
    return found


def _walk_refs(value: Any, found: set[str]) -> None:
    if isinstance(value, str):
        if "${secret:" in value:
            found.update(name.strip() for esc, name in SECRET_REF.findall(value) if not esc)
    elif isinstance(value, Mapping):
        for v in value.values():
            _walk_refs(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _walk_refs(v, found)


def mentions_ref(value: Any) -> bool:
    """Whether any string in a JSON value holds ``${secret:`` (a reference, or an escaped one)."""
    if isinstance(value, str):
        return "${secret:" in value
    if isinstance(value, Mapping):
        return any(mentions_ref(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(mentions_ref(v) for v in value)
    return False


def substitute(value: Any, secrets: Mapping[str, str]) -> Any:
    """A copy of `value` with every `${secret:NAME}` replaced (names must be in `secrets`)."""
    if isinstance(value, str):
        if "${secret:" not in value:
            return value
        return SECRET_REF.sub(
            lambda m: "${secret:" + m.group(2) + "}" if m.group(1)
            else secrets[m.group(2).strip()],
            value,
        )
    if isinstance(value, Mapping):
        return {k: substitute(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, secrets) for v in value]
    return value


class Redactor:
    """Replaces known secret values in strings and JSON values."""

    def __init__(self, values: set[str] | None = None) -> None:
        self.values: list[str] = []
        self.add(*(values or ()))

    def add(self, *values: str) -> None:
        # Longest first, so a secret containing another is scrubbed whole.
        merged = set(self.values) | {v for v in values if v}
        self.values = sorted(merged, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        for v in self.values:
            if v in text:
                text = text.replace(v, REDACTED)
        return text

    def json(self, value: Any) -> Any:
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.json(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.json(v) for v in value]
        return value


class SecretResolver:
    """Resolves secret names; Vault answers are cached `secret_cache_ttl_s` seconds."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self._environ = environ if environ is not None else os.environ
        self._dir: Path = settings.secrets_folder
        self._http = http
        self._own_http = http is None
        self._cache: dict[str, tuple[float, str]] = {}

    async def resolve(self, name: str) -> str:
        """The value of one secret; `SecretMissing` (not retryable) names where it looked."""
        value = self._environ.get(env_name(name))
        if value is not None:
            return value
        path = self._file(name)
        if path is not None and path.is_file():
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        if self.settings.vault_addr and self.settings.vault_token:
            value = await self._vault(name)
            if value is not None:
                return value
        where = [f"environment variable {env_name(name)}", f"file {self._dir / name}"]
        if self.settings.vault_addr:
            where.append(f"Vault {self._vault_location(name)}")
        raise SecretMissing(
            f"secret {name!r} is not set; looked in " + ", ".join(where) + "; fix: set one of them"
        )

    async def resolve_config(self, config: Any) -> tuple[Any, set[str]]:
        """`config` with every reference resolved and every escaped one (`$${secret:..}`,
        data a template inserted) turned back into its literal text, so the bytes sent out
        equal the data; and the set of secret values used."""
        names = find_refs(config)
        if not names:
            return (substitute(config, {}) if mentions_ref(config) else config), set()
        values = {name: await self.resolve(name) for name in sorted(names)}
        return substitute(config, values), set(values.values())

    def _file(self, name: str) -> Path | None:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            return None  # never read outside the secrets folder
        return self._dir / name

    def _vault_location(self, name: str) -> tuple[str, str]:
        path, _, field = name.partition("#")
        if not field:
            path = f"{self.settings.vault_path_prefix.strip('/')}/{name}".lstrip("/")
            field = "value"
        return path.strip("/"), field

    async def _vault(self, name: str) -> str | None:
        cached = self._cache.get(name)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        path, field = self._vault_location(name)
        url = (
            f"{self.settings.vault_addr.rstrip('/')}/v1/"  # type: ignore[union-attr]
            f"{self.settings.vault_mount.strip('/')}/data/{path}"
        )
        if self._http is None:
            self._http = httpx.AsyncClient()
        try:
            response = await self._http.get(
                url, headers={"X-Vault-Token": self.settings.vault_token or ""}, timeout=5.0
            )
        except httpx.HTTPError as exc:
            raise SecretBackendFailed(
                f"Vault at {self.settings.vault_addr} did not answer for secret {name!r}: "
                f"{type(exc).__name__}"
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise SecretMissing(
                f"Vault refused secret {name!r} ({response.status_code}); fix: give "
                f"FLOWLOG_VAULT_TOKEN read access to {self.settings.vault_mount}/data/{path}"
            )
        if response.status_code != 200:
            raise SecretBackendFailed(f"Vault answered {response.status_code} for secret {name!r}")
        data = ((response.json() or {}).get("data") or {}).get("data") or {}
        value = data.get(field)
        if value is None:
            return None
        value = str(value)
        self._cache[name] = (now + self.settings.secret_cache_ttl_s, value)
        return value

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
