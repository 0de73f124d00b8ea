"""Content checksum of a stream of Arrow record batches, independent of how the rows are split into batches.

Each row is hashed over all of its columns with DuckDB's vectorised `hash(...)`; the digest is the row count and
the sum of the row hashes modulo 2**64 (order-independent, so Parquet row groups need not match the export
batches). The export digests the Arrow batches streamed out of PostgreSQL; the read-back lets DuckDB scan the
Parquet file natively (no Arrow round trip), which gives the same hash for every type PostgreSQL exports through
ADBC (integers, floats, numeric-as-text, text, bytea, bool, date, time, timestamp(tz), json(b), uuid; see the tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MOD = 1 << 64


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def hash_expr(names: list[str]) -> str:
    """The per-row hash every digest sums: DuckDB's `hash` over all columns, in table order."""
    return f"hash({', '.join(_quote(n) for n in names)})"


def _connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    # one batch of ~100k rows is hashed in milliseconds; more DuckDB threads only fight the export's reader, writer
    # and upload threads for the cores (measured: 3M rows in 0.2 s on one thread, 0.6 s on two)
    return duckdb.connect(config={"threads": threads} if threads else {})


@dataclass
class ArrowDigest:
    rows: int = 0
    total: int = 0
    _con: duckdb.DuckDBPyConnection = field(default_factory=lambda: _connect(threads=1), repr=False)

    def update(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._con.register("_digest_batch", batch)
        try:
            n, s = self._con.execute(f"SELECT count(*), coalesce(sum({hash_expr(batch.schema.names)})::HUGEINT, 0) "
                                     "FROM _digest_batch").fetchone()
        finally:
            self._con.unregister("_digest_batch")
        self.rows += int(n)
        self.total = (self.total + int(s)) % MOD

    def add_hashes(self, hashes: pa.Array) -> None:
        """Add row hashes computed elsewhere (a `hash_expr` column of the scan): uint64, summed with wrap-around."""
        if len(hashes):
            self.rows += len(hashes)
            self.total = (self.total + pc.sum(hashes.cast(pa.uint64())).as_py()) % MOD

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


def digest_parquet(path: Path) -> ArrowDigest:
    """Digest a Parquet file with DuckDB's own streaming reader (bounded memory, all row groups)."""
    names = pq.read_schema(path).names
    d = ArrowDigest(_con=_connect())
    try:
        n, s = d._con.execute(f"SELECT count(*), coalesce(sum({hash_expr(names)})::HUGEINT, 0) "
                              "FROM read_parquet(?)", [str(path)]).fetchone()
    finally:
        d.close()
    d.rows, d.total = int(n), int(s) % MOD
    return d


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
