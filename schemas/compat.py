"""Avro schema resolution, checked statically: can a reader schema read a writer's data?

Follows the resolution rules of the Avro specification (records by field name and alias,
defaults for added fields, enum symbols, unions, numeric promotion). Every problem names
its path in the schema and what would fix it. ``check_versions`` runs it both ways over
every pair of kept versions: new readers read old data, old readers read new data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from flowlog.schemas.registry import SchemaCatalog, SchemaVersion

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
NAMED = {"record", "enum", "fixed", "error"}


def _names(schema: Any, ns: str | None, out: dict[str, dict[str, Any]]) -> None:
    if isinstance(schema, list):
        for s in schema:
            _names(s, ns, out)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED:
            ns = schema.get("namespace", ns)
            name = schema["name"]
            full = name if "." in name or not ns else f"{ns}.{name}"
            out[full] = schema
            out.setdefault(full.rsplit(".", 1)[-1], schema)
            for f in schema.get("fields", []):
                _names(f["type"], ns, out)
        elif kind in ("array", "map"):
            _names(schema.get("items", schema.get("values")), ns, out)
        elif isinstance(kind, dict | list):
            _names(kind, ns, out)


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.rnames: dict[str, dict[str, Any]] = {}
        self.wnames: dict[str, dict[str, Any]] = {}
        _names(reader, None, self.rnames)
        _names(writer, None, self.wnames)
        self.seen: set[tuple[int, int]] = set()
        self.problems: list[str] = []

    def _deref(self, s: Any, names: dict[str, dict[str, Any]]) -> Any:
        if isinstance(s, str) and s not in PRIMITIVES:
            return names.get(s, names.get(s.rsplit(".", 1)[-1], s))
        if isinstance(s, dict) and not isinstance(s.get("type"), str):
            return self._deref(s["type"], names)
        if isinstance(s, dict) and s["type"] in PRIMITIVES:
            return s["type"]  # a primitive with a logical type resolves as the primitive
        return s

    @staticmethod
    def _kind(s: Any) -> str:
        if isinstance(s, list):
            return "union"
        if isinstance(s, str):
            return s
        return str(s["type"])

    def matches(self, r: Any, w: Any) -> bool:
        """Whether r can read w, without recording problems."""
        saved, self.problems = self.problems, []
        self.check(r, w, "")
        ok = not self.problems
        self.problems = saved
        return ok

    def check(self, r: Any, w: Any, path: str) -> None:
        r, w = self._deref(r, self.rnames), self._deref(w, self.wnames)
        rk, wk = self._kind(r), self._kind(w)
        if wk == "union":
            for i, branch in enumerate(w):
                if rk == "union":
                    if not any(self.matches(rb, branch) for rb in r):
                        self.problems.append(
                            f"{path or '/'}: the writer's union branch {self._label(branch)} "
                            f"(#{i}) has no match in the reader's union; add it to the reader"
                        )
                else:
                    self.check(r, branch, path)
            return
        if rk == "union":
            if not any(self.matches(rb, w) for rb in r):
                self.problems.append(
                    f"{path or '/'}: the reader's union has no branch for the writer's "
                    f"{self._label(w)}; add that type to the union"
                )
            return
        if rk != wk:
            if rk in PRIMITIVES and wk in PROMOTIONS and rk in PROMOTIONS[wk]:
                return
            self.problems.append(
                f"{path or '/'}: type changed from {wk} to {rk}, which Avro cannot resolve; "
                "keep the type, or add a new field with a default and stop writing the old one"
            )
            return
        if rk in PRIMITIVES:
            return
        if rk in NAMED and not self._same_name(r, w, path):
            return
        if rk in ("record", "error"):
            self._record(r, w, path)
        elif rk == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                self.problems.append(
                    f"{path or '/'}: enum {r['name']} cannot read symbol(s) {missing}; "
                    "add them to the reader, or give the reader's enum a `default`"
                )
        elif rk == "fixed":
            if r["size"] != w["size"]:
                self.problems.append(f"{path}: fixed size changed {w['size']} -> {r['size']}")
        elif rk == "array":
            self.check(r["items"], w["items"], f"{path}[]")
        elif rk == "map":
            self.check(r["values"], w["values"], f"{path}{{}}")

    @staticmethod
    def _label(s: Any) -> str:
        if isinstance(s, dict):
            return str(s.get("name", s.get("type")))
        return str(s)

    def _same_name(self, r: dict[str, Any], w: dict[str, Any], path: str) -> bool:
        rn, wn = r["name"].rsplit(".", 1)[-1], w["name"].rsplit(".", 1)[-1]
        aliases = {a.rsplit(".", 1)[-1] for a in r.get("aliases", [])}
        if rn != wn and wn not in aliases:
            self.problems.append(
                f"{path or '/'}: named type renamed {wn} -> {rn}; add \"aliases\": [\"{wn}\"]"
            )
            return False
        return True

    def _record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        key = (id(r), id(w))
        if key in self.seen:  # a recursive type already being checked on this path
            return
        self.seen.add(key)
        try:
            self._fields(r, w, path)
        finally:
            self.seen.discard(key)

    def _fields(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        wfields = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            names = [f["name"], *f.get("aliases", [])]
            wf = next((wfields[n] for n in names if n in wfields), None)
            fpath = f"{path}/{f['name']}"
            if wf is None:
                if "default" not in f:
                    self.problems.append(
                        f"{fpath}: the reader needs this field but the writer has none and "
                        "the reader gives no default; give the field a `default`"
                    )
            else:
                self.check(f["type"], wf["type"], fpath)


def can_read(reader: Any, writer: Any) -> list[str]:
    """Problems that stop ``reader`` from reading data written with ``writer`` (empty: fine)."""
    checker = _Checker(reader, writer)
    checker.check(reader, writer, "")
    return checker.problems


@dataclass(frozen=True)
class Incompatibility:
    name: str
    reader: int | str
    writer: int | str
    problems: list[str]
    backward: bool  # True: the newer schema is the reader (it cannot read old data)

    def explain(self) -> str:
        direction = (
            "new readers could not read data already in the log"
            if self.backward
            else "consumers still on the old schema could not read new data"
        )
        reader = self.reader if self.reader == "candidate" else f"v{self.reader}"
        writer = self.writer if self.writer == "candidate" else f"v{self.writer}"
        lines = [f"{self.name}: {reader} cannot read data written with {writer} "
                 f"({direction}):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def check_pair(old: SchemaVersion, new: SchemaVersion) -> list[Incompatibility]:
    """Both directions between two versions of one schema."""
    out = []
    for reader, writer, backward in ((new, old, True), (old, new, False)):
        problems = can_read(reader.schema, writer.schema)
        if problems:
            out.append(
                Incompatibility(new.name, reader.version, writer.version, problems, backward)
            )
    return out


def check_versions(catalog: SchemaCatalog) -> list[Incompatibility]:
    """Every pair of kept versions of every schema, both ways."""
    out = []
    for versions in catalog.versions.values():
        for i, old in enumerate(versions):
            for new in versions[i + 1:]:
                out.extend(check_pair(old, new))
    return out


def check_candidate(path: Path, catalog: SchemaCatalog) -> list[Incompatibility]:
    """A user's changed or new ``.avsc`` against every kept version of its name."""
    schema = json.loads(path.read_text())
    parse_schema(schema)  # a schema Avro itself rejects fails here, with fastavro's reason
    name = schema["name"].rsplit(".", 1)[-1]
    out = []
    for kept in catalog.versions.get(name, []):
        pairs: list[tuple[Any, Any, int | str, int | str, bool]] = [
            (schema, kept.schema, "candidate", kept.version, True),
            (kept.schema, schema, kept.version, "candidate", False),
        ]
        for reader, writer, rv, wv, backward in pairs:
            problems = can_read(reader, writer)
            if problems:
                out.append(Incompatibility(name, rv, wv, problems, backward))
    return out
