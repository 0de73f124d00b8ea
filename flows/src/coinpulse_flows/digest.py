"""Content checksum of a stream of Arrow record batches, independent of how the rows are split into batches.

Each row is hashed over all of its columns with DuckDB's vectorised `hash(...)`; the digest is the row count and
the sum of the row hashes modulo 2**64 (order-independent, so Parquet row groups need not match the export
batches). The same code runs over the batches streamed out of PostgreSQL and over the Parquet file read back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

MOD = 1 << 64


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class ArrowDigest:
    rows: int = 0
    total: int = 0
    _con: duckdb.DuckDBPyConnection = field(default_factory=duckdb.connect, repr=False)

    def update(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        cols = ", ".join(_quote(n) for n in batch.schema.names)
        self._con.register("_digest_batch", batch)
        try:
            n, s = self._con.execute(f"SELECT count(*), coalesce(sum(hash({cols}))::HUGEINT, 0) FROM _digest_batch").fetchone()
        finally:
            self._con.unregister("_digest_batch")
        self.rows += int(n)
        self.total = (self.total + int(s)) % MOD

    @property
    def hex(self) -> str:
        return f"{self.total:016x}"

    def close(self) -> None:
        self._con.close()


def digest_batches(batches: Iterable[pa.RecordBatch]) -> ArrowDigest:
    d = ArrowDigest()
    for b in batches:
        d.update(b)
    return d


def digest_parquet(path: Path, batch_rows: int = 65_536) -> ArrowDigest:
    """Read a Parquet file back batch by batch (bounded memory) and digest it."""
    pf = pq.ParquetFile(path)
    try:
        return digest_batches(pf.iter_batches(batch_size=batch_rows))
    finally:
        pf.close()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
