"""Claim check: an event too large for a Kafka record goes to a blob store; the record
carries a reference (``ClaimCheck``: uri, sha256, size) instead.

Blobs are content-addressed (sha256), so a retried publish writes the same blob. A store
only reads blobs inside its own root, and every read is checked against its hash: a
forged claim check can neither read other files nor smuggle in other bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from flowlog.schemas.errors import BlobStoreError, ClaimCheckError

if TYPE_CHECKING:
    from flowlog.settings import Settings


class BlobStore(Protocol):
    """Where out-of-line payloads live."""

    def put(self, data: bytes) -> str:
        """Store ``data``; return its uri (the same bytes always give the same uri)."""
        ...

    def get(self, uri: str) -> bytes:
        """The bytes at ``uri``; ``ClaimCheckError`` if this store does not hold it."""
        ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBlobStore:
    """A folder (default ``<state_dir>/blobs``): ``<root>/<sha[:2]>/<sha>``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        path = self._path(digest)
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)  # atomic: a reader never sees half a blob
        except OSError as exc:
            raise BlobStoreError(f"cannot write blob {path}: {exc}") from exc
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ClaimCheckError(f"claim check {uri!r} is not a file:// uri of this store")
        path = Path(parsed.path).resolve()
        if path.parent.parent != self.root or len(path.name) != 64:
            raise ClaimCheckError(f"claim check {uri!r} points outside the blob store {self.root}")
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ClaimCheckError(f"claim check blob {uri!r} is missing") from exc
        except OSError as exc:
            raise BlobStoreError(f"cannot read blob {uri!r}: {exc}") from exc


class S3BlobStore:
    """An S3-compatible bucket (``s3://bucket/prefix``); the endpoint comes from boto3's
    usual configuration (``AWS_ENDPOINT_URL``, credentials chain)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if client is None:
            try:
                import boto3
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise BlobStoreError(
                    "blob_store_url is s3:// but boto3 is not installed; "
                    "fix: pip install 'flowlog[s3]'"
                ) from exc
            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, digest: str) -> str:
        return f"{self.prefix}/{digest}" if self.prefix else digest

    def put(self, data: bytes) -> str:
        key = self._key(sha256_hex(data))
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:
            raise BlobStoreError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        return f"s3://{self.bucket}/{key}"

    def get(self, uri: str) -> bytes:
        parsed = urlparse(uri)
        key = parsed.path.lstrip("/")
        digest = key.rsplit("/", 1)[-1]
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or key != self._key(digest):
            raise ClaimCheckError(f"claim check {uri!r} is not in s3://{self.bucket}/{self.prefix}")
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
            return bytes(obj["Body"].read())
        except Exception as exc:
            if type(exc).__name__ == "NoSuchKey":
                raise ClaimCheckError(f"claim check blob {uri!r} is missing") from exc
            raise BlobStoreError(f"cannot read {uri!r}: {exc}") from exc


def blob_store_for(url: str | None, local_dir: Path) -> BlobStore:
    """``s3://bucket/prefix`` gives an ``S3BlobStore``; ``None`` or a path a local folder."""
    if not url:
        return LocalBlobStore(local_dir)
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3BlobStore(parsed.netloc, parsed.path)
    if parsed.scheme in ("", "file"):
        return LocalBlobStore(Path(parsed.path))
    raise BlobStoreError(
        f"blob_store_url {url!r} has an unknown scheme; fix: use s3://bucket/prefix or a path"
    )


def blob_store_from_settings(settings: Settings) -> BlobStore:
    return blob_store_for(settings.blob_store_url, settings.blob_dir)
