"""S3 and local-archive I/O with verification metadata (rows, content digest, sha256 of the bytes)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from coinpulse_common import s3

from coinpulse_flows.settings import FlowSettings

PART_BYTES = 8 << 20
# multipart in 8 MiB parts / ranged GETs of 8 MiB on four threads: bounded memory whatever the object size (S3Proxy's
# small heap did not survive one large single PUT), and the transfer is not paced by one request at a time
TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=PART_BYTES, max_concurrency=4)
# a server-side copy in one request up to S3's 5 GiB limit (S3Proxy's filesystem backend has no UploadPartCopy)
COPY = TransferConfig(multipart_threshold=5 << 30, multipart_chunksize=1 << 30, max_concurrency=4)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: float


@dataclass(frozen=True)
class Manifest:
    """What a tier object must contain, stored as S3 user metadata and in the Parquet footer."""

    rows: int
    digest: str
    sha256: str
    source: str

    def to_meta(self) -> dict[str, str]:
        return {"rows": str(self.rows), "digest": self.digest, "sha256": self.sha256, "source": self.source}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Manifest | None:
        try:
            return cls(int(meta["rows"]), meta["digest"], meta["sha256"], meta.get("source", ""))
        except (KeyError, ValueError):
            return None


class Store:
    def __init__(self, settings: FlowSettings):
        self.s = settings
        self.bucket = settings.s3_bucket
        self.c = s3.client(settings)

    def ensure_bucket(self) -> None:
        names = {b["Name"] for b in self.c.list_buckets().get("Buckets", [])}
        if self.bucket not in names:
            self.c.create_bucket(Bucket=self.bucket)

    def upload(self, path: Path, key: str, manifest: Manifest) -> None:
        self.c.upload_file(str(path), self.bucket, key, Config=TRANSFER,
                           ExtraArgs={"Metadata": manifest.to_meta()})

    def open_upload(self, key: str, concurrency: int = 3) -> StreamingUpload:
        return StreamingUpload(self.c, self.bucket, key, concurrency=concurrency)

    def download(self, key: str, path: Path) -> None:
        self.c.download_file(self.bucket, key, str(path), Config=TRANSFER)

    def head(self, key: str) -> dict | None:
        try:
            return self.c.head_object(Bucket=self.bucket, Key=key)
        except self.c.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def manifest(self, key: str) -> Manifest | None:
        h = self.head(key)
        return Manifest.from_meta(h.get("Metadata", {})) if h else None

    def delete(self, key: str) -> None:
        self.c.delete_object(Bucket=self.bucket, Key=key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for page in self.c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                if o["Key"].endswith("/"):  # directory markers of filesystem-backed S3 servers
                    continue
                yield ObjectInfo(o["Key"], int(o["Size"]), o["LastModified"].timestamp())


class StreamingUpload:
    """A write-only file object that uploads what is written to it as a multipart upload while the writer is still
    producing: every full part goes to a pool of `concurrency` threads, and `write` blocks once `concurrency + 1`
    parts are in flight, so memory stays at a few parts whatever the object size. The sha256 of the bytes is taken
    on the way through.

    Nothing exists under the key until `commit`; `abort` (call it on any error) discards the parts. S3 fixes user
    metadata when an upload starts, but the manifest is only known at the end, so `commit` completes the upload and
    then sets the metadata with a server-side copy onto itself (no bytes cross the network); an object that fits in
    one part is one PUT with its metadata.
    """

    def __init__(self, client, bucket: str, key: str, part_bytes: int = PART_BYTES, concurrency: int = 3):
        self.c, self.bucket, self.key, self.part_bytes = client, bucket, key, part_bytes
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[Future] = []
        self._slots = threading.BoundedSemaphore(concurrency + 1)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part")
        self.closed = False

    # -- the file protocol pyarrow's writers use --------------------------------------------------------------
    def write(self, data) -> int:
        self._buf += data
        self._sha.update(data)
        n = len(memoryview(data))
        self._size += n
        if len(self._buf) >= self.part_bytes:
            part, self._buf = bytes(self._buf), bytearray()
            self._ship(part)
        return n

    def tell(self) -> int:
        return self._size

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:  # the ParquetWriter closes its sink; the upload ends with commit / abort
        self.closed = True

    # -- the upload ------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def _ship(self, part: bytes) -> None:
        for f in self._parts:  # fail fast: an upload error stops the writer at its next part
            if f.done() and f.exception() is not None:
                raise f.exception()
        if self._upload_id is None:
            self._upload_id = self.c.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        self._slots.acquire()
        fut = self._pool.submit(self._put_part, len(self._parts) + 1, part)
        fut.add_done_callback(lambda _: self._slots.release())
        self._parts.append(fut)

    def _put_part(self, number: int, body: bytes) -> dict:
        r = self.c.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number,
                               Body=body)
        return {"PartNumber": number, "ETag": r["ETag"]}

    def commit(self, metadata: dict[str, str]) -> None:
        tail, self._buf = bytes(self._buf), bytearray()
        try:
            if self._upload_id is None:
                self.c.put_object(Bucket=self.bucket, Key=self.key, Body=tail, Metadata=metadata)
                return
            if tail:
                self._ship(tail)
            parts = [f.result() for f in self._parts]
            self.c.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                             MultipartUpload={"Parts": parts})
            self._upload_id = None
            self.c.copy({"Bucket": self.bucket, "Key": self.key}, self.bucket, self.key, Config=COPY,
                        ExtraArgs={"Metadata": metadata, "MetadataDirective": "REPLACE"})
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        for f in self._parts:
            f.cancel()
        self._pool.shutdown(wait=True)
        if self._upload_id is not None:
            self.c.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None


def fsync_rename(tmp: Path, final: Path) -> None:
    """Make `final` appear atomically with durable content."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dfd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
