"""The kept schemas: every released version of every ``.avsc`` in ``avro/<Name>/vN.avsc``.

Each version is parsed once (fastavro) and known by its CRC-64-AVRO (Rabin) fingerprint
of the Parsing Canonical Form, which is what single-object encoding puts in front of
the body. The newest version of a name is the one writers use; any kept version can be
read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form
from flowlog.schemas.model import NAMESPACE

AVRO_DIR = Path(__file__).resolve().parent / "avro"
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


def rabin_fingerprint(schema: Any) -> bytes:
    """The 8 bytes single-object encoding writes: CRC-64-AVRO of the canonical form, LE."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True)
class SchemaVersion:
    """One kept version of one schema."""

    name: str
    version: int
    path: Path | None
    schema: dict[str, Any]  # as written in the file
    parsed: Any = field(repr=False)  # fastavro's parsed form (what the codec uses)
    canonical: str = field(repr=False)
    fingerprint: bytes = field(repr=False)

    @property
    def full_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"


def make_version(name: str, version: int, schema: dict[str, Any], path: Path | None = None
                 ) -> SchemaVersion:
    parsed = parse_schema(schema, _write_hint=True, _force=True)
    canonical = to_parsing_canonical_form(schema)
    return SchemaVersion(
        name, version, path, schema, parsed, canonical, rabin_fingerprint(schema)
    )


class SchemaCatalog:
    """All kept versions, by name and by fingerprint."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self.versions: dict[str, list[SchemaVersion]] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        for v in sorted(versions, key=lambda v: (v.name, v.version)):
            self.versions.setdefault(v.name, []).append(v)
            other = self.by_fingerprint.get(v.fingerprint)
            if other is not None and other.name != v.name:
                raise ValueError(f"{v.name} v{v.version} and {other.name} share a fingerprint")
            # identical versions of one name read the same: keep the newest
            self.by_fingerprint[v.fingerprint] = v

    @classmethod
    def load(cls, root: Path = AVRO_DIR) -> SchemaCatalog:
        """Read every ``<root>/<Name>/vN.avsc``."""
        found = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for path in sorted(folder.iterdir()):
                match = _VERSION_FILE.match(path.name)
                if not match:
                    continue
                schema = json.loads(path.read_text())
                if schema.get("name") != folder.name:
                    raise ValueError(f"{path}: record name {schema.get('name')!r} != folder")
                found.append(make_version(folder.name, int(match.group(1)), schema, path))
        return cls(found)

    def names(self) -> list[str]:
        return sorted(self.versions)

    def newest(self, name: str) -> SchemaVersion:
        try:
            return self.versions[name][-1]
        except KeyError:
            raise KeyError(f"no schema named {name!r} is kept") from None

    def newest_schemas(self) -> dict[str, dict[str, Any]]:
        return {name: vs[-1].schema for name, vs in self.versions.items()}


@cache
def default_catalog() -> SchemaCatalog:
    """The catalog of the schemas shipped in this package (loaded once)."""
    return SchemaCatalog.load(AVRO_DIR)


def write_new_versions(root: Path = AVRO_DIR) -> list[Path]:
    """Write ``vN+1.avsc`` for every Python type whose schema differs from its newest kept one.

    Returns the files written. Old versions are never touched: they are the released
    contract that replay tooling reads.
    """
    from flowlog.schemas.avrogen import expected_schemas, strip_docs

    written = []
    for name, schema in expected_schemas().items():
        folder = root / name
        kept = sorted(
            (int(m.group(1)), p)
            for p in folder.glob("v*.avsc")
            if (m := _VERSION_FILE.match(p.name))
        ) if folder.exists() else []
        if kept and strip_docs(json.loads(kept[-1][1].read_text())) == strip_docs(schema):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"v{(kept[-1][0] if kept else 0) + 1}.avsc"
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written
