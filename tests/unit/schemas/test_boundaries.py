"""schemas/ depends on nothing else of ours (settings only for type hints / from_settings)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from flowlog.schemas.claimcheck import LocalBlobStore, S3BlobStore, blob_store_for
from flowlog.schemas.errors import BlobStoreError, ClaimCheckError
from flowlog.schemas.topics import DAY_MS, TopicCatalog

pytestmark = pytest.mark.unit
SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def test_schemas_imports_nothing_else_of_the_project() -> None:
    offenders = []
    for path in SCHEMAS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("flowlog.") and not name.startswith(
                        ("flowlog.schemas", "flowlog.settings")):
                    offenders.append(f"{path.name}: {name}")
                if name.split(".")[0] in {"aggregates", "streams", "projections", "api", "infra"}:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_topic_catalog_follows_the_design() -> None:
    cat = TopicCatalog.build("acme.", default_partitions=12)
    assert [s.name for s in cat] == [
        "acme.workflow-definitions", "acme.triggers", "acme.commands", "acme.node-tasks",
        "acme.node-results", "acme.timers", "acme.execution-events", "acme.quarantine"]
    keyed = [s for s in cat if s.key == "execution_id"]
    assert {s.partitions for s in keyed} == {12}
    assert cat.topics["execution-events"].config["retention.ms"] == "-1"
    assert cat.topics["workflow-definitions"].config["retention.ms"] == "-1"
    assert int(cat.topics["quarantine"].config["retention.ms"]) >= 30 * DAY_MS
    assert cat.topics["triggers"].retention == "7 days"
    assert all(s.config["cleanup.policy"] == "delete" for s in cat)  # nothing compacted away


def test_local_blob_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    uri = store.put(b"payload")
    assert store.put(b"payload") == uri
    assert store.get(uri) == b"payload"
    with pytest.raises(ClaimCheckError):
        store.get("s3://bucket/x")
    with pytest.raises(ClaimCheckError):
        store.get((tmp_path / ".." / "etc").as_uri())


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[(Bucket, Key)] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, object]:
        import io

        class NoSuchKey(Exception):
            pass

        if (Bucket, Key) not in self.objects:
            raise NoSuchKey(Key)
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def test_s3_blob_store_with_an_s3_compatible_client() -> None:
    s3 = FakeS3()
    store = S3BlobStore("bucket", "/claims/", client=s3)
    uri = store.put(b"big payload")
    assert uri.startswith("s3://bucket/claims/")
    assert store.get(uri) == b"big payload"
    with pytest.raises(ClaimCheckError, match="not in"):
        store.get("s3://other/claims/" + uri.rsplit("/", 1)[1])
    with pytest.raises(ClaimCheckError, match="missing"):
        store.get("s3://bucket/claims/" + "0" * 64)


def test_blob_store_urls() -> None:
    assert isinstance(blob_store_for(None, Path("/tmp/x")), LocalBlobStore)
    assert isinstance(blob_store_for("/tmp/y", Path("/tmp/x")), LocalBlobStore)
    with pytest.raises(BlobStoreError, match="unknown scheme"):
        blob_store_for("ftp://host/x", Path("/tmp/x"))
