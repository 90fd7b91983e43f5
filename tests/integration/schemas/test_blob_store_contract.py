"""One contract for every blob store behind the claim check: the local folder and an
S3-compatible bucket (boto3 against moto's S3 server, a real HTTP server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from flowlog.schemas.claimcheck import BlobStore, LocalBlobStore, S3BlobStore
from flowlog.schemas.errors import ClaimCheckError
from moto.server import ThreadedMotoServer

pytestmark = pytest.mark.integration


class BlobStoreContract:
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BlobStore]:
        raise NotImplementedError
        yield  # pragma: no cover

    def test_put_then_get_gives_the_same_bytes(self, store: BlobStore) -> None:
        data = bytes(range(256)) * 4096  # 1 MiB, every byte value
        assert store.get(store.put(data)) == data

    def test_the_same_bytes_give_the_same_uri(self, store: BlobStore) -> None:
        assert store.put(b"payload") == store.put(b"payload") != store.put(b"other")

    def test_a_missing_blob_is_a_claim_check_error(self, store: BlobStore) -> None:
        uri = store.put(b"x")
        missing = uri[: -64] + "0" * 64
        with pytest.raises(ClaimCheckError, match="missing"):
            store.get(missing)

    def test_a_uri_of_another_store_is_refused(self, store: BlobStore) -> None:
        for uri in ("file:///etc/passwd", "s3://someone-else/" + "0" * 64,
                    "https://example.com/" + "0" * 64):
            with pytest.raises(ClaimCheckError):
                store.get(uri)


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BlobStore]:
        yield LocalBlobStore(tmp_path / "blobs")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class TestS3BlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, s3_endpoint: str, unique_id: str) -> Iterator[BlobStore]:
        client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        bucket = f"flowlog-{unique_id}"
        client.create_bucket(Bucket=bucket)
        yield S3BlobStore(bucket, "claims", client=client)
