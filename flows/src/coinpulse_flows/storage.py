"""S3 and local-archive I/O with verification metadata (rows, content digest, sha256 of the bytes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from coinpulse_common import s3

from coinpulse_flows.settings import FlowSettings

# multipart in 16 MiB parts on two threads: bounded memory whatever the object size (S3Proxy's small heap
# did not survive one large single PUT)
TRANSFER = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=16 << 20, max_concurrency=2)


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
