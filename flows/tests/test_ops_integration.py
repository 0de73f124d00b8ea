"""Backup + restore check of a real dump, and data checks that fail their run with a readable reason."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from coinpulse_flows import backup, flows
from coinpulse_flows.storage import Store

pytestmark = pytest.mark.integration


def test_dumps_keep_the_retention_and_the_newest_restores(flow_env, flow_settings, helpers):
    s, schema = flow_env["settings"], flow_env["schema"]
    helpers.make_trades(s, schema, ages=(1,), rows_per_day=3000)
    flow_settings(backup_keep=1)
    first = flows.backup_postgres()
    second = flows.backup_postgres()
    assert backup.backups(s, Store(s)) == [second["key"]] and second["deleted"] == [first["key"]]
    state = flows.restore_check(return_state=True)
    assert state.is_completed()
    r = state.result()
    assert r["key"] == second["key"] and r["tables_restored"] >= r["tables_in_dump"] > 0
    assert r["rows_restored"] >= 3000
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:  # the scratch database is gone again
        assert c.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (r["database"],)).fetchone()[0] == 0


def test_candle_gaps_fail_the_run_with_the_reason(flow_env):
    s, schema = flow_env["settings"], flow_env["schema"]
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"CREATE TABLE {schema}.trades (market text, sequential_id bigint, trade_timestamp timestamptz, "
                  "price float8, volume float8, ask_bid text)")
        c.execute(f"CREATE TABLE {schema}.candles (market text, interval text, bucket_start timestamptz, close float8)")
        c.execute(f"INSERT INTO {schema}.trades VALUES ('KRW-GAP', 1, %s, 1, 1, 'BID'), ('KRW-OK', 2, %s, 1, 1, 'BID')",
                  (minute + timedelta(seconds=5), minute + timedelta(seconds=7)))
        c.execute(f"INSERT INTO {schema}.candles VALUES ('KRW-OK', '1m', %s, 1), ('KRW-GAP', '5m', %s, 1)",
                  (minute, minute - timedelta(minutes=minute.minute % 5)))  # a rollup does not fill a 1m gap
    state = flows.data_checks(only=["candle_gaps"], return_state=True)
    assert state.is_failed()
    assert "candle gaps: 1 market-minutes" in state.message and "KRW-GAP" in state.message
    run = httpx.get(f"{os.environ['PREFECT_API_URL']}/flow_runs/{state.state_details.flow_run_id}", timeout=10,
                    headers=s.prefect_headers()).json()
    assert run["state"]["type"] == "FAILED" and "KRW-GAP" in run["state"]["message"]
    with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
        c.execute(f"INSERT INTO {schema}.candles VALUES ('KRW-GAP', '1m', %s, 1)", (minute,))
    assert flows.data_checks(only=["candle_gaps", "tier_sizes"])["checks"] == ["candle_gaps", "tier_sizes"]
