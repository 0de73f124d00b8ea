"""A late row that repeats a key already tiered (a candle re-emitted by a replay with corrected values) is returned
once by the cross-tier query, with its newest values, at every step: beside the tiered part in PostgreSQL, as the
day's next part in S3 (the tiering flow's own objects), and in the local archive, during and after the move."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from coinpulse_flows import layout, query, tiering
from coinpulse_flows.query import run_query
from coinpulse_flows.storage import Store

pytestmark = pytest.mark.integration

QUERY = ("SELECT market, interval, bucket_start, close, revision FROM {schema}.candles "
         "ORDER BY market, interval, bucket_start")


def _candles(s, schema, day) -> None:
    """`<schema>.candles` as the sink's model declares it (primary key market, interval, bucket_start), one day."""
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"""CREATE TABLE {schema}.candles (market text NOT NULL, interval text NOT NULL,
            bucket_start timestamptz NOT NULL, close float8 NOT NULL, revision integer NOT NULL,
            PRIMARY KEY (market, interval, bucket_start)) PARTITION BY RANGE (bucket_start)""")
        _partition(c, schema, day)
        c.execute(f"""INSERT INTO {schema}.candles SELECT 'KRW-' || (g % 5), iv, '{day} 00:00:00+00'::timestamptz
            + (g / 5) * interval '1 minute', 100 + g, 0 FROM generate_series(0, 999) g, unnest(ARRAY['1m', '5m']) iv""")


def _partition(c, schema, day) -> None:
    c.execute(f"CREATE TABLE IF NOT EXISTS {schema}.candles_{day:%Y%m%d} PARTITION OF {schema}.candles "
              f"FOR VALUES FROM ('{day} 00:00:00+00') TO ('{day + timedelta(days=1)} 00:00:00+00')")


def _replay(s, schema, day, close: float, revision: int) -> None:
    """A replay re-emits candle (KRW-1, 1m, 00:00) with corrected values; the sink upserts it into the day's
    re-created partition (the day's earlier rows are in S3 by now)."""
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        _partition(c, schema, day)
        c.execute(f"INSERT INTO {schema}.candles VALUES ('KRW-1', '1m', %s, %s, %s) ON CONFLICT "
                  "(market, interval, bucket_start) DO UPDATE SET close = EXCLUDED.close, revision = EXCLUDED.revision",
                  (f"{day} 00:00:00+00", close, revision))


def _tier(s) -> list:
    store = Store(s)
    return [tiering.tier_partition(s, p, store) for p in tiering.due_partitions(s)]


def test_a_repeated_key_is_returned_once_with_its_newest_values_in_every_tier(flow_env, helpers):
    s, schema, ov = flow_env["settings"], flow_env["schema"], flow_env["overrides"]
    day = helpers.today() - timedelta(days=15)
    _candles(s, schema, day)
    store = Store(s)

    def rows():
        return run_query(s, QUERY.format(schema=schema))[1]

    def candle(got):
        hits = [r for r in got if r[:2] == ("KRW-1", "1m") and r[2].date() == day and r[2].hour == r[2].minute == 0]
        assert len(hits) == 1, f"candle (KRW-1, 1m, {day} 00:00) returned {len(hits)} times: {hits}"
        return hits[0][3:]

    def deduplicated() -> bool:
        """Whether the view pays for the dedupe (only while a key can repeat: a day in two sources)."""
        con = query.connect(s)
        try:
            return query.RANK in query.build_views(s, con, store)[f"{schema}.candles"]
        finally:
            con.close()

    def parts():
        return sorted(o.key.rsplit("/", 1)[-1] for o in store.list(layout.day_prefix(f"{schema}.candles", day,
                                                                                        s.tier_prefix)))

    original = rows()
    assert len(original) == 2000 and candle(original) == (101.0, 0)
    (first,) = _tier(s)
    assert (first.state, first.rows) == ("tiered", 2000) and parts() == ["part-0.parquet"]
    assert not deduplicated()  # the day is in one part only: the plain union

    # the corrected candle is in PostgreSQL, the old one in S3: once, the corrected values
    _replay(s, schema, day, 555.0, 1)
    assert deduplicated()
    got = rows()
    assert len(got) == 2000 and candle(got) == (555.0, 1)

    # tiered again: the day's next part, written by the tiering flow beside part-0 (which still holds the old row)
    (second,) = _tier(s)
    assert (second.state, second.rows) == ("tiered", 1) and parts() == ["part-0.parquet", "part-1.parquet"]
    assert run_query(s, f"SELECT close FROM read_parquet('s3://{s.s3_bucket}/{first.key}') WHERE market = 'KRW-1' "
                        f"AND interval = '1m' AND bucket_start = '{day} 00:00:00+00'")[1] == [(101.0,)]
    got = rows()
    assert len(got) == 2000 and candle(got) == (555.0, 1)
    # every other candle is the tiered one, unchanged
    changed = {r[:3]: r[3:] for r in got}.items() - {r[:3]: r[3:] for r in original}.items()
    assert [v for _, v in changed] == [(555.0, 1)]

    # corrected once more: three parts of the day, the highest wins
    _replay(s, schema, day, 777.0, 2)
    assert candle(rows()) == (777.0, 2)
    (third,) = _tier(s)
    assert third.key.endswith("part-2.parquet")
    got = rows()
    assert len(got) == 2000 and candle(got) == (777.0, 2)

    # to the local archive, with a crash after the first copy (that part in both tiers), then all of it
    later = helpers.today() + timedelta(days=60)
    assert len(tiering.archive_due(s, store, later)) == 3
    rc = helpers.archive_crashing_after_first_copy(ov, later)
    assert rc.returncode == 97 and len(parts()) == 3
    got = rows()
    assert len(got) == 2000 and candle(got) == (777.0, 2)
    for k in tiering.archive_due(s, store, later):
        tiering.archive_object(s, store, k)
    assert parts() == []
    got = rows()
    assert len(got) == 2000 and candle(got) == (777.0, 2)

    # a late correction after the whole day is archived: PostgreSQL beside three archived parts, then a fourth part
    _replay(s, schema, day, 999.0, 3)
    assert candle(rows()) == (999.0, 3)
    (fourth,) = _tier(s)
    assert fourth.key.endswith("part-3.parquet")
    got = rows()
    assert len(got) == 2000 and candle(got) == (999.0, 3)



def test_a_repeated_key_in_the_default_partition_is_returned_once(flow_env, helpers):
    """A late row whose day has no partition lands in DEFAULT, which may hold any day: the view deduplicates then,
    though every day is in one source only."""
    s, schema = flow_env["settings"], flow_env["schema"]
    day = helpers.today() - timedelta(days=15)
    _candles(s, schema, day)
    store = Store(s)
    (first,) = _tier(s)
    assert first.state == "tiered"
    con = query.connect(s)
    try:
        assert query.RANK not in query.build_views(s, con, store)[f"{schema}.candles"]
    finally:
        con.close()
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"CREATE TABLE {schema}.candles_default PARTITION OF {schema}.candles DEFAULT")
        c.execute(f"INSERT INTO {schema}.candles VALUES ('KRW-1', '1m', %s, 1234.0, 4)", (f"{day} 00:00:00+00",))
        assert c.execute(f"SELECT count(*) FROM ONLY {schema}.candles_default").fetchone()[0] == 1
    got = run_query(s, QUERY.format(schema=schema))[1]
    hits = [r for r in got if r[:2] == ("KRW-1", "1m") and r[2].date() == day and r[2].hour == r[2].minute == 0]
    assert len(got) == 2000 and [h[3:] for h in hits] == [(1234.0, 4)]
