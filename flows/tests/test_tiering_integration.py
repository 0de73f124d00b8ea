"""Postgres → S3 → local archive with partitions 15 and 61 days old, through the Prefect server: nothing is
deleted before verification, injected crashes lose nothing and a re-run finishes, and one query answers the same
rows before, during and after every move."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from coinpulse_flows import export, flows, layout, tiering
from coinpulse_flows.query import run_query
from coinpulse_flows.settings import FlowSettings
from coinpulse_flows.storage import Store, StreamingUpload

pytestmark = pytest.mark.integration

QUERY = "SELECT market, sequential_id, trade_timestamp, price, volume, ask_bid, note FROM {schema}.trades ORDER BY 2"


def _rows(s, schema):
    return run_query(s, QUERY.format(schema=schema))[1]


def _run_tier_in_subprocess(overrides: dict, crash_at: str, what: str) -> int:
    code = (
        "import json, sys; from coinpulse_flows.settings import FlowSettings; from coinpulse_flows import tiering;"
        "from coinpulse_flows.storage import Store; s = FlowSettings(**json.loads(sys.argv[1]));"
        + ("[tiering.tier_partition(s, p, Store(s)) for p in tiering.due_partitions(s)]" if what == "tier" else
           "[tiering.archive_object(s, Store(s), k) for k in tiering.archive_due(s, Store(s))]"))
    import json
    env = {**os.environ, tiering.CRASH_ENV: crash_at}
    return subprocess.run([sys.executable, "-c", code, json.dumps(overrides)], env=env, timeout=120,
                          check=False).returncode


def _flow_run_state(state) -> str:
    run_id = state.state_details.flow_run_id
    r = httpx.get(f"{os.environ['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=10,
                  headers=FlowSettings().prefect_headers())
    r.raise_for_status()
    return r.json()["state"]["type"]


def test_partitions_move_down_the_tiers_verified_and_crash_safe(flow_env, helpers):
    make_trades, partitions_of, today = helpers.make_trades, helpers.partitions_of, helpers.today
    s, schema, ov = flow_env["settings"], flow_env["schema"], flow_env["overrides"]
    make_trades(s, schema, ages=(3, 15, 61))
    d15, d61 = today() - timedelta(days=15), today() - timedelta(days=61)
    before = _rows(s, schema)
    assert len(before) == 15000
    store = Store(s)
    key15, key61 = (layout.tier_key(f"{schema}.trades", d, s.tier_prefix) for d in (d15, d61))

    # crash between upload and drop: the object is there, the partition too, and the query counts each row once
    assert _run_tier_in_subprocess(ov, "after_upload", "tier") == 97
    assert f"trades_{d61:%Y%m%d}" in partitions_of(s, schema) and store.head(key61) is not None
    assert _rows(s, schema) == before

    # the daily flow, through the Prefect server, finishes the job
    state = flows.tier_postgres(return_state=True)
    assert state.is_completed() and _flow_run_state(state) == "COMPLETED"
    assert partitions_of(s, schema) == {f"trades_{today() - timedelta(days=3):%Y%m%d}"}
    m15, m61 = store.manifest(key15), store.manifest(key61)
    assert (m15.rows, m61.rows) == (5000, 5000) and m15.digest != m61.digest
    assert _rows(s, schema) == before

    # S3 → local: crash after the verified copy, before the delete; then the monthly flow finishes
    assert _run_tier_in_subprocess(ov, "after_archive_copy", "archive") == 97
    local61 = Path(ov["archive_dir_override"]) / key61
    assert local61.exists() and store.head(key61) is not None
    assert _rows(s, schema) == before
    state = flows.tier_archive(return_state=True)
    assert state.is_completed() and _flow_run_state(state) == "COMPLETED"
    assert store.head(key61) is None and store.head(key15) is not None and local61.exists()
    assert [r["state"] for r in state.result()] == ["already-archived"]
    assert _rows(s, schema) == before

    # a second run of either flow has nothing left to do
    assert flows.tier_postgres() == [] and flows.tier_archive() == []


def test_a_copy_that_fails_verification_deletes_nothing(flow_env, helpers):
    make_trades, partitions_of = helpers.make_trades, helpers.partitions_of
    s, schema = flow_env["settings"], flow_env["schema"]
    make_trades(s, schema, ages=(20,), rows_per_day=2000)

    class CorruptingStore(Store):
        def download(self, key, path):
            super().download(key, path)
            data = bytearray(Path(path).read_bytes())
            data[len(data) // 2] ^= 0xFF
            Path(path).write_bytes(bytes(data))

    (p,) = tiering.due_partitions(s)
    with pytest.raises(tiering.VerificationError):
        tiering.tier_partition(s, p, CorruptingStore(s))
    assert p.name in partitions_of(s, schema)
    assert len(_rows(s, schema)) == 2000


def test_a_streamed_upload_appears_only_on_commit_with_its_metadata(stack, unique):
    store = Store(FlowSettings())
    big, small = f"test-flows-{unique}/stream/big.bin", f"test-flows-{unique}/stream/small.bin"
    data = os.urandom(12 << 20)
    try:
        up = StreamingUpload(store.c, store.bucket, big, part_bytes=5 << 20, concurrency=2)
        for i in range(0, len(data), 64 << 10):
            up.write(data[i:i + (64 << 10)])
        assert store.head(big) is None  # parts are uploaded, the object does not exist yet
        up.commit({"rows": "3", "sha256": up.sha256})
        head = store.head(big)
        assert head["Metadata"] == {"rows": "3", "sha256": hashlib.sha256(data).hexdigest()}
        assert store.c.get_object(Bucket=store.bucket, Key=big)["Body"].read() == data

        one = StreamingUpload(store.c, store.bucket, small)  # fits in one part: a single PUT
        one.write(b"x" * 1000)
        one.commit({"rows": "1"})
        assert store.head(small)["Metadata"] == {"rows": "1"} and store.head(small)["ContentLength"] == 1000
    finally:
        for k in (big, small):
            store.delete(k)


def test_an_aborted_streamed_upload_leaves_nothing(stack, unique):
    store = Store(FlowSettings())
    key = f"test-flows-{unique}/stream/aborted.bin"
    up = StreamingUpload(store.c, store.bucket, key, part_bytes=5 << 20, concurrency=2)
    up.write(os.urandom(11 << 20))
    upload_id = up._upload_id
    assert upload_id is not None
    up.abort()
    assert store.head(key) is None
    pending = store.c.list_multipart_uploads(Bucket=store.bucket, Prefix=key).get("Uploads", [])
    assert upload_id not in {u["UploadId"] for u in pending}


def test_an_export_with_the_wrong_row_count_uploads_nothing(flow_env, helpers):
    s, schema = flow_env["settings"], flow_env["schema"]
    helpers.make_trades(s, schema, ages=(20,), rows_per_day=2000)
    (p,) = tiering.due_partitions(s)
    store, key = Store(s), layout.tier_key(p.table, p.day, s.tier_prefix)
    with pytest.raises(tiering.VerificationError, match="exported 2000 rows"):
        export.export_partition(s, p.schema, p.name, store, key, p.name, expected_rows=1999)
    assert store.head(key) is None
    manifest, size = export.export_partition(s, p.schema, p.name, store, key, p.name, expected_rows=2000)
    assert manifest.rows == 2000 and store.head(key)["ContentLength"] == size and store.manifest(key) == manifest


def test_both_readers_export_the_same_rows_and_digest(flow_env, helpers):
    s, schema = flow_env["settings"], flow_env["schema"]
    helpers.make_trades(s, schema, ages=(20,), rows_per_day=3000)
    (p,) = tiering.due_partitions(s)
    assert export.reader_for(export.column_types(s, p.schema, p.name)) == "duckdb"
    store = Store(s)
    got = {}
    for reader in ("duckdb", "adbc"):
        key = f"{s.tier_prefix}readers/{reader}.parquet"
        got[reader], _ = export.export_partition(s, p.schema, p.name, store, key, p.name, 3000, reader=reader)
        assert store.manifest(key) == got[reader]
    assert (got["duckdb"].rows, got["duckdb"].digest) == (got["adbc"].rows, got["adbc"].digest) == (3000, got["adbc"].digest)


def test_a_table_with_types_outside_the_fast_path_is_tiered_through_adbc(flow_env, helpers):
    s, schema = flow_env["settings"], flow_env["schema"]
    d = helpers.today() - timedelta(days=20)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"""CREATE TABLE {schema}.posts (post_no bigint, at timestamptz NOT NULL, tags text[], score numeric,
            body jsonb, id uuid) PARTITION BY RANGE (at)""")
        c.execute(f"CREATE TABLE {schema}.posts_{d:%Y%m%d} PARTITION OF {schema}.posts "
                  f"FOR VALUES FROM ('{d} 00:00:00+00') TO ('{d + timedelta(days=1)} 00:00:00+00')")
        c.execute(f"""INSERT INTO {schema}.posts SELECT g, '{d} 00:00:00+00'::timestamptz + g * interval '1 s',
            ARRAY['btc', 'k' || g], g / 7.0, jsonb_build_object('n', g), md5(g::text)::uuid
            FROM generate_series(1, 1500) g""")
    (p,) = tiering.due_partitions(s)
    assert export.reader_for(export.column_types(s, p.schema, p.name)) == "adbc"
    r = tiering.tier_partition(s, p, Store(s))
    assert (r.state, r.rows) == ("tiered", 1500)
    assert p.name not in helpers.partitions_of(s, schema)
    assert Store(s).manifest(r.key).digest == r.digest
