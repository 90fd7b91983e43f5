"""Schema evolution: every kept version reads every other (both ways), proven statically
(Avro resolution rules) and by data (fastavro writes with one, reads with the other)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many
from flowlog.schemas.avrogen import drift, expected_schemas
from flowlog.schemas.codec import Codec
from flowlog.schemas.compat import can_read, check_versions
from flowlog.schemas.registry import SchemaCatalog, default_catalog, make_version
from typer.testing import CliRunner

from flowlog.cli import app

pytestmark = pytest.mark.unit
CATALOG = default_catalog()
PAIRS = [
    (name, old.version, new.version)
    for name, versions in CATALOG.versions.items()
    for i, old in enumerate(versions)
    for new in versions[i:]  # each version with itself and with every later one
]


def _version(name: str, v: int) -> Any:
    return next(x for x in CATALOG.versions[name] if x.version == v)


def _roundtrip(writer: Any, reader: Any, records: list[dict[str, Any]]) -> list[Any]:
    w, r = parse_schema(writer), parse_schema(reader)
    out = []
    for rec in records:
        buf = io.BytesIO()
        schemaless_writer(buf, w, rec)
        buf.seek(0)
        out.append(schemaless_reader(buf, w, r))
    return out


@pytest.mark.parametrize(("name", "old", "new"), PAIRS, ids=[f"{n}-v{a}-v{b}" for n, a, b in PAIRS])
def test_kept_versions_read_each_other(name: str, old: int, new: int) -> None:
    o, n = _version(name, old), _version(name, new)
    assert can_read(n.schema, o.schema) == []  # new readers read old data
    assert can_read(o.schema, n.schema) == []  # old readers read new data
    old_data = list(generate_many(o.schema, 25))
    new_data = list(generate_many(n.schema, 25))
    assert len(_roundtrip(o.schema, n.schema, old_data)) == 25
    assert len(_roundtrip(n.schema, o.schema, new_data)) == 25


def test_the_whole_kept_set_is_compatible_and_matches_the_python_types() -> None:
    assert check_versions(CATALOG) == []
    assert drift(CATALOG.newest_schemas()) == []


def test_drift_between_a_type_and_its_avsc_is_reported_with_the_field() -> None:
    newest = copy.deepcopy(CATALOG.newest_schemas())
    newest["NodeStarted"]["fields"][-1]["type"] = "long"  # attempt: int in the type
    newest.pop("TimerSet")
    problems = drift(newest)
    assert any("NodeStarted" in p and "/attempt" in p for p in problems)
    assert any("TimerSet: no .avsc kept" in p for p in problems)


# --- a worked evolution: v2 adds a field with a default, kept beside v1 --------------------


def _evolved(tmp_path: Path, field: dict[str, Any]) -> SchemaCatalog:
    for name, schema in expected_schemas().items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "v1.avsc").write_text(json.dumps(schema))
    v2 = copy.deepcopy(expected_schemas()["NodeStarted"])
    v2["fields"].append(field)
    (tmp_path / "NodeStarted" / "v2.avsc").write_text(json.dumps(v2))
    return SchemaCatalog.load(tmp_path)


def test_new_version_reads_old_data_and_old_version_reads_new_data(tmp_path: Path) -> None:
    catalog = _evolved(tmp_path, {"name": "worker", "type": "string", "default": "unknown"})
    assert check_versions(catalog) == []
    v1_writer = Codec(catalog, reader_versions={"NodeStarted": 1})
    base = {"event_id": "9d3c7a2e-0000-4000-8000-000000000001", "event_type": "NodeStarted",
            "occurred_at": 0, "execution_id": "e", "workflow_id": "w", "workflow_version": 1,
            "seq": 1, "correlation_id": None, "causation_id": None, "tenant": "default",
            "node_id": "n", "attempt": 1}
    # old data (v1 bytes) read by the new version: the added field takes its default
    old_bytes = Codec(SchemaCatalog([v for v in catalog.versions["NodeStarted"]
                                     if v.version == 1])).encode("NodeStarted", base)
    new_reader = Codec(catalog)
    decoded = new_reader.decode(old_bytes)
    assert decoded.writer_version == 1 and decoded.record["worker"] == "unknown"
    # new data (v2 bytes) read by a reader pinned to v1: the new field is skipped
    new_bytes = new_reader.encode("NodeStarted", {**base, "worker": "w-7"})
    assert new_bytes[2:10] == catalog.newest("NodeStarted").fingerprint
    old_view = v1_writer.decode(new_bytes)
    assert old_view.writer_version == 2 and "worker" not in old_view.record
    assert old_view.record["node_id"] == "n"


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda s: s["fields"].append({"name": "x", "type": "string"}),
         "give the field a `default`"),
        (lambda s: s["fields"].pop(), "give the field a `default`"),  # attempt removed
        (lambda s: s["fields"][-1].update(type="string"), "type changed from"),
        (lambda s: s.update(name="NodeBegan"), "aliases"),
        (lambda s: s["fields"][-1].update(type="long"), "type changed from long to int"),
    ],
    ids=["added-without-default", "removed-without-default", "type-change", "rename",
         "narrowing"],
)
def test_breaking_changes_are_caught_and_explained(change: Any, expect: str) -> None:
    old = CATALOG.newest("NodeStarted").schema
    new = copy.deepcopy(old)
    change(new)
    problems = can_read(new, old) + can_read(old, new)
    assert problems and any(expect in p for p in problems), problems


def test_safe_changes_pass() -> None:
    old = CATALOG.newest("NodeStarted").schema
    renamed = copy.deepcopy(old)
    renamed.update(name="NodeBegan", aliases=["NodeStarted"])
    assert can_read(renamed, old) == []
    promoted = copy.deepcopy(old)
    promoted["fields"][-1]["type"] = "long"  # int -> long: new readers read old data
    assert can_read(promoted, old) == []
    enum_old = CATALOG.newest("TimerSet").schema
    enum_new = copy.deepcopy(enum_old)
    kind = next(f for f in enum_new["fields"] if f["name"] == "kind")
    kind["type"]["symbols"].append("wait_event")
    assert can_read(enum_new, enum_old) == []
    assert any("wait_event" in p for p in can_read(enum_old, enum_new))
    kind["type"]["default"] = "delay"
    enum_old_with_default = copy.deepcopy(enum_old)
    next(f for f in enum_old_with_default["fields"] if f["name"] == "kind")["type"][
        "default"] = "delay"
    assert can_read(enum_old_with_default, enum_new) == []


def test_adding_a_union_branch_is_reported_for_old_readers() -> None:
    old = CATALOG.newest("ExecutionEventBatch").schema
    new = copy.deepcopy(old)
    new["fields"][-1]["type"]["items"].append(
        {"type": "record", "name": "WaitStarted", "fields": [{"name": "a", "type": "string"}]})
    assert can_read(new, old) == []
    assert any("WaitStarted" in p for p in can_read(old, new))


def test_cli_check_explains_a_users_breaking_change(tmp_path: Path) -> None:
    runner = CliRunner()
    good = copy.deepcopy(CATALOG.newest("NodeStarted").schema)
    good["fields"].append({"name": "worker", "type": ["null", "string"], "default": None})
    (tmp_path / "good.avsc").write_text(json.dumps(good))
    result = runner.invoke(app, ["schemas", "check", str(tmp_path / "good.avsc")])
    assert result.exit_code == 0, result.output
    bad = copy.deepcopy(good)
    bad["fields"][-1] = {"name": "worker", "type": "string"}
    (tmp_path / "bad.avsc").write_text(json.dumps(bad))
    result = runner.invoke(app, ["schemas", "check", str(tmp_path / "bad.avsc")])
    assert result.exit_code == 1
    assert "/worker" in result.output and "default" in result.output
    assert "new readers could not read data already in the log" in result.output
    result = runner.invoke(app, ["schemas", "check"])
    assert result.exit_code == 0 and "compatible" in result.output


def test_fingerprints_are_unique_and_stable() -> None:
    fps = [v.fingerprint for vs in CATALOG.versions.values() for v in vs]
    assert len(set(fps)) == len(fps)
    again = make_version("NodeStarted", 1, CATALOG.newest("NodeStarted").schema)
    assert again.fingerprint == CATALOG.newest("NodeStarted").fingerprint
