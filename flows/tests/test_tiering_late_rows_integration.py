"""Late rows for a day already tiered: they land in a re-created partition, which is tiered as the day's next part
beside the old one (never over it), a crash in between is finished by a re-run into the same part, archiving never
replaces a file it already holds, and the cross-tier query returns every row of the day once at every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import psycopg
import pytest
from coinpulse_flows import layout, tiering
from coinpulse_flows.query import run_query
from coinpulse_flows.storage import Store

pytestmark = pytest.mark.integration

QUERY = "SELECT market, sequential_id, trade_timestamp, price, volume, ask_bid, note FROM {schema}.trades ORDER BY 2"


def _late(s, schema, day, first_sid: int, n: int) -> None:
    """Rows for `day` arriving after it was tiered: the sink re-creates the day's partition for them."""
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"CREATE TABLE IF NOT EXISTS {schema}.trades_{day:%Y%m%d} PARTITION OF {schema}.trades "
                  f"FOR VALUES FROM ('{day} 00:00:00+00') TO ('{day + timedelta(days=1)} 00:00:00+00')")
        for i in range(n):
            c.execute(f"INSERT INTO {schema}.trades VALUES ('KRW-LATE', %s, %s, 1.5, 2.0, 'BID', 'late')",
                      (first_sid + i, f"{day} 12:00:{i:02d}+00"))


def _tier(s) -> list:
    store = Store(s)
    return [tiering.tier_partition(s, p, store) for p in tiering.due_partitions(s)]


def test_late_rows_of_a_tiered_day_become_a_new_part_and_are_counted_once(flow_env, helpers):
    s, schema, ov = flow_env["settings"], flow_env["schema"], flow_env["overrides"]
    helpers.make_trades(s, schema, ages=(15,), rows_per_day=3000)
    day = helpers.today() - timedelta(days=15)
    table = f"{schema}.trades"
    store = Store(s)

    def rows():
        return run_query(s, QUERY.format(schema=schema))[1]

    def parts():
        return sorted(o.key.rsplit("/", 1)[-1] for o in store.list(layout.day_prefix(table, day, s.tier_prefix)))

    original = rows()
    assert len(original) == 3000
    (first,) = _tier(s)
    assert first.state == "tiered" and parts() == ["part-0.parquet"]
    m0 = store.manifest(first.key)

    # late rows: the day is in PostgreSQL (the new partition) and in S3 (the old rows): both, once
    _late(s, schema, day, 900_000, 7)
    got = rows()
    assert len(got) == 3007 and len({r[1] for r in got}) == 3007

    (second,) = _tier(s)
    assert second.state == "tiered" and second.rows == 7 and parts() == ["part-0.parquet", "part-1.parquet"]
    assert store.manifest(first.key) == m0  # the day's first object is untouched
    assert sorted(rows()) == sorted(got)

    # more late rows, and a crash between the upload and the drop: the copy exists beside the partition, the query
    # still counts its rows once, and the re-run finishes into the same part
    _late(s, schema, day, 910_000, 3)
    code = ("import json, sys; from coinpulse_flows.settings import FlowSettings; from coinpulse_flows import tiering;"
            "from coinpulse_flows.storage import Store; s = FlowSettings(**json.loads(sys.argv[1]));"
            "[tiering.tier_partition(s, p, Store(s)) for p in tiering.due_partitions(s)]")
    rc = subprocess.run([sys.executable, "-c", code, json.dumps(ov)], env={**os.environ,
                        tiering.CRASH_ENV: "after_upload"}, timeout=120, check=False).returncode
    assert rc == 97 and parts() == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    all_rows = rows()
    assert len(all_rows) == 3010 and len({r[1] for r in all_rows}) == 3010
    (third,) = _tier(s)
    assert third.key.endswith("part-2.parquet") and parts() == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert sorted(rows()) == sorted(all_rows)

    # to the local archive: every part, counted once, during (a crash after a copy, before the delete) and after
    later = helpers.today() + timedelta(days=60)
    keys = tiering.archive_due(s, store, later)
    assert len(keys) == 3
    rc = helpers.archive_crashing_after_first_copy(ov, later)
    local0 = s.archive_dir / keys[0]
    assert rc.returncode == 97 and local0.exists() and store.head(keys[0]) is not None
    assert sorted(rows()) == sorted(all_rows)
    for k in tiering.archive_due(s, store, later):
        tiering.archive_object(s, store, k)
    assert parts() == [] and sorted(rows()) == sorted(all_rows)

    # the old bug's state: an object at a path the archive already holds with other rows. Archiving keeps the
    # archived file and stores the object beside it; the query reads both, once
    _late(s, schema, day, 920_000, 2)
    (fourth,) = _tier(s)
    assert fourth.key.endswith("part-3.parquet")  # numbered after the archive's parts too
    store.c.copy_object(Bucket=store.bucket, Key=keys[0], CopySource={"Bucket": store.bucket, "Key": fourth.key},
                        MetadataDirective="COPY")
    store.delete(fourth.key)
    before = local0.read_bytes()
    assert len(rows()) == 3012
    r = tiering.archive_object(s, store, keys[0])
    assert r.state == "archived" and r.path != str(local0) and local0.read_bytes() == before
    final = rows()
    assert len(final) == 3012 and len({x[1] for x in final}) == 3012
    assert {x[1] for x in final} >= {x[1] for x in original}
