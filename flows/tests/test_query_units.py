"""The cross-tier query's dedupe rule, on DuckDB alone: per primary key, the newest source wins (PostgreSQL, then
the higher part, the archive's `part-<n>.<sha>` just above `part-<n>`)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from coinpulse_flows import layout
from coinpulse_flows.query import PG_RANK, TierFile, file_rank, view_sql

pytestmark = pytest.mark.unit

KEY = ("market", "interval", "bucket_start")


def test_parts_rank_by_number_and_an_archive_alternate_just_above_its_part():
    assert layout.part_rank("p/t/date=2024-05-01/part-0.parquet") == 0
    assert layout.part_rank("p/t/date=2024-05-01/part-3.parquet") == 6
    assert layout.part_rank("p/t/date=2024-05-01/part-3.0a1b2c3d4e5f.parquet") == 7
    assert layout.part_rank("part-10.parquet") > layout.part_rank("part-9.ffffffffffff.parquet")
    with pytest.raises(ValueError, match="not a part key"):
        layout.part_rank("p/t/date=2024-05-01/other.parquet")


def test_an_s3_object_at_the_path_of_an_archive_file_ranks_above_that_file():
    local = TierFile("/a/t/date=2024-05-01/part-0.parquet", "local", "t/date=2024-05-01/part-0.parquet")
    s3 = TierFile("s3://b/t/date=2024-05-01/part-0.parquet", "s3", "t/date=2024-05-01/part-0.parquet")
    s3_next = TierFile("s3://b/t/date=2024-05-01/part-1.parquet", "s3", "t/date=2024-05-01/part-1.parquet")
    day = [local, s3, s3_next]
    assert file_rank(local, day) < file_rank(s3, day) < file_rank(s3_next, day)
    assert file_rank(s3, [s3]) == 0


def _candles(rows: list[tuple]) -> pa.Table:
    m, i, b, c = zip(*rows, strict=True)
    return pa.table({"market": list(m), "interval": list(i), "bucket_start": pa.array(b, pa.int64()),
                     "close": pa.array(c, pa.float64())})


def test_each_key_once_with_the_newest_sources_values(tmp_path):
    con = duckdb.connect()
    part0, part1, alt1 = (tmp_path / n for n in ("part-0.parquet", "part-1.parquet", "part-1.0a1b2c3d4e5f.parquet"))
    pq.write_table(_candles([("A", "1m", 1, 10.0), ("A", "1m", 2, 20.0), ("A", "5m", 1, 50.0), ("B", "1m", 1, 1.0)]),
                   part0)
    pq.write_table(_candles([("A", "1m", 2, 21.0), ("B", "1m", 1, 1.5)]), part1)  # a replay corrected two candles
    pq.write_table(_candles([("B", "1m", 1, 1.7)]), alt1)  # and B again, archived beside part-1
    con.register("hot", _candles([("A", "1m", 2, 22.0), ("C", "1m", 1, 3.0)]))  # PostgreSQL: newest of all

    def q(sources, key=KEY):
        con.execute(f"CREATE OR REPLACE VIEW candles AS {view_sql(sources, key)}")
        return sorted(con.sql("SELECT * FROM candles").fetchall())

    def src(path):
        return f"SELECT * FROM read_parquet(['{path}'])", layout.part_rank(path.name)

    pg = ("SELECT * FROM hot", PG_RANK)
    assert q([pg, src(part0), src(part1), src(alt1)]) == [
        ("A", "1m", 1, 10.0), ("A", "1m", 2, 22.0), ("A", "5m", 1, 50.0), ("B", "1m", 1, 1.7), ("C", "1m", 1, 3.0)]
    # the order of the sources does not matter, only their ranks
    assert q([src(alt1), src(part1), pg, src(part0)]) == q([pg, src(part0), src(part1), src(alt1)])
    assert q([src(part0), src(part1)]) == [("A", "1m", 1, 10.0), ("A", "1m", 2, 21.0), ("A", "5m", 1, 50.0),
                                           ("B", "1m", 1, 1.5)]
    # the rank column is never returned; without a key (or from one source) every row is read as it is
    assert [c for c in con.sql("SELECT * FROM candles").columns] == ["market", "interval", "bucket_start", "close"]
    assert len(q([src(part0), src(part1)], key=None)) == 6
    assert len(q([src(part0)])) == 4


def test_a_filter_on_the_key_still_reaches_the_sources():
    """The dedupe groups by the key: DuckDB pushes a filter on key columns below it, into each source's scan."""
    con = duckdb.connect()
    con.register("hot", _candles([("A", "1m", 1, 1.0)]))
    con.register("old", _candles([("A", "1m", 1, 0.5), ("B", "1m", 1, 2.0)]))
    con.execute(f"CREATE VIEW candles AS {view_sql([('SELECT * FROM hot', PG_RANK), ('SELECT * FROM old', 0)], KEY)}")
    plan = "\n".join(r[1] for r in con.sql("EXPLAIN SELECT * FROM candles WHERE market = 'B'").fetchall())
    assert plan.replace(" ", "").count("Filters:market='B'") == 2, plan
    assert con.sql("SELECT close FROM candles WHERE market = 'B'").fetchall() == [(2.0,)]
