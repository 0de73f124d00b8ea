"""End to end: the simulator, the ingester, the candle agent, Connect and the real bronze S3 sink fill an isolated
namespace; a range of silver and gold is deleted; `backfill --source s3` (reading what the sink wrote) and
`--source kafka` each bring back exactly the rows the stream wrote, minute by minute. A backfill over a range whose
bronze lost an object, or whose Kafka log was truncated, refuses and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from coinpulse_common import bronze
from coinpulse_common.avro import schema_text
from coinpulse_common.kafka import admin as kafka_admin
from coinpulse_common.kafka import consumer as kafka_consumer
from coinpulse_common.s3 import client as s3_client
from coinpulse_testing.net import free_port, get_json
from coinpulse_testing.procs import spawn_python, stop_all
from coinpulse_testing.wait import wait_for
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARKETS = "KRW-BTC,KRW-ETH"
LATE_S = 30  # the backfill's late-arrival window in this test (a feed without outages)
TRADE_COLS = ("market", "sequential_id", "trade_timestamp", "price", "volume", "ask_bid", "prev_closing_price",
              "change", "change_price", "stream_type", "backfilled", "received_at")
CANDLE_COLS = ("market", "bucket_start", "open", "high", "low", "close", "volume", "quote_volume", "trade_count",
               "buy_volume", "sell_volume", "first_trade_at", "last_trade_at")


def _snapshot(ns, lo: datetime, hi: datetime) -> tuple[list[tuple], list[tuple]]:
    trades = ns.rows(f"SELECT {', '.join(TRADE_COLS)} FROM {{silver}}.trades WHERE trade_timestamp >= %s "
                     "AND trade_timestamp < %s ORDER BY market, sequential_id", (lo, hi))
    candles = ns.rows(f"SELECT {', '.join(CANDLE_COLS)} FROM {{gold}}.candles WHERE interval = '1m' AND "
                      "bucket_start >= %s AND bucket_start < %s ORDER BY market, bucket_start", (lo, hi))
    return trades, candles


def _delete(ns, lo: datetime, hi: datetime) -> None:
    with psycopg.connect(ns.settings.pg_dsn(), autocommit=True) as c:
        c.execute(f'DELETE FROM "{ns.ns}_silver".trades WHERE trade_timestamp >= %s AND trade_timestamp < %s', (lo, hi))
        c.execute(f'DELETE FROM "{ns.ns}_gold".candles WHERE bucket_start >= %s AND bucket_start < %s', (lo, hi))


def _same_candles(got: list[tuple], want: list[tuple]) -> None:
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for g, w in zip(got, want, strict=True):
        assert (g[2], g[3], g[4], g[5], g[8], g[11], g[12]) == (w[2], w[3], w[4], w[5], w[8], w[11], w[12]), (g, w)
        assert g[6:8] == pytest.approx(w[6:8], rel=1e-9) and g[9:11] == pytest.approx(w[9:11], rel=1e-9, abs=1e-12)


def test_backfill_from_the_bronze_sinks_objects_and_from_kafka_restores_what_the_stream_wrote(namespace, tmp_path):
    from coinpulse_flows import backfill
    from coinpulse_flows.backfill import rebuild
    from coinpulse_flows.settings import FlowSettings
    from coinpulse_sink.service import SinkService
    from coinpulse_sink.settings import SinkSettings

    ns = namespace
    t = ns.topic
    a = kafka_admin(ns.settings)
    extra = [t("candle.late"), t("dlq.candle-agent"), t("upbit.orderbook"), t("dlq.ingest-upbit")]
    for f in a.create_topics([NewTopic(n, 1, 1) for n in extra]).values():
        f.result(timeout=30)
    reg = SchemaRegistryClient({"url": ns.settings.registry})
    for name, schema in ((t("candle.late"), "trade"), (t("upbit.orderbook"), "orderbook"),
                         (t("dlq.candle-agent"), "dead_letter"), (t("dlq.ingest-upbit"), "dead_letter")):
        reg.register_schema(f"{name}-value", Schema(schema_text(schema), "AVRO"))

    svc = SinkService(SinkSettings(sink_namespace=ns.ns, sink_metrics_port=free_port(), sink_bronze_max_age_s=2.0,
                                   sink_supervise_interval_s=1.0))
    svc.start()
    sim_port, ingest_port, agent_port = free_port(), free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = {**os.environ, "COINPULSE_LOG_FORMAT": "json"}
    procs = []
    try:
        procs.append(spawn_python(["-m", "coinpulse_sim_upbit", "--port", str(sim_port), "--seed", "11", "--markets",
                                   MARKETS, "--duration", "230", "--wait-clients", "--duplicate-rate", "0.05",
                                   "--malformed-rate", "0.01"], tmp_path / "sim.log", env))
        wait_for(lambda: get_json(sim_url + "/sim/stats"), 60, "the simulator")
        procs.append(spawn_python(["-m", "coinpulse_candle_agent"], tmp_path / "agent.log", {
            **env, "COINPULSE_CANDLE_APP_ID": f"{ns.ns}-candles", "COINPULSE_CANDLE_METRICS_PORT": str(agent_port),
            "COINPULSE_CANDLE_TRADE_TOPIC": t("upbit.trade"), "COINPULSE_CANDLE_OUT_1M": t("candle.1m"),
            "COINPULSE_CANDLE_OUT_5M": t("candle.5m"), "COINPULSE_CANDLE_OUT_1H": t("candle.1h"),
            "COINPULSE_CANDLE_OUT_MENTION": t("mention.1m"), "COINPULSE_CANDLE_LATE_TOPIC": t("candle.late"),
            "COINPULSE_CANDLE_DLQ_TOPIC": t("dlq.candle-agent"), "COINPULSE_CANDLE_MENTIONS": "false",
            "COINPULSE_CANDLE_POST_TOPIC": t("dc.post"), "COINPULSE_CANDLE_COMMENT_TOPIC": t("dc.comment"),
            "COINPULSE_CANDLE_GRACE_MS": "2000", "COINPULSE_CANDLE_IDLE_AFTER_MS": "1500"}))
        procs.append(spawn_python(["-m", "coinpulse_ingest_upbit"], tmp_path / "ingest.log", {
            **env, "COINPULSE_INGEST_UPBIT_WS_URL": f"ws://127.0.0.1:{sim_port}/websocket/v1",
            "COINPULSE_INGEST_UPBIT_REST_URL": sim_url, "COINPULSE_INGEST_MARKETS": MARKETS,
            "COINPULSE_INGEST_METRICS_PORT": str(ingest_port), "COINPULSE_INGEST_TRADE_TOPIC": t("upbit.trade"),
            "COINPULSE_INGEST_TICKER_TOPIC": t("upbit.ticker"), "COINPULSE_INGEST_ORDERBOOK_TOPIC": t("upbit.orderbook"),
            "COINPULSE_INGEST_RAW_TOPIC": t("upbit.raw"), "COINPULSE_INGEST_DLQ_TOPIC": t("dlq.ingest-upbit")}))

        def logs() -> str:
            return " | ".join(f"{n}: {(tmp_path / f'{n}.log').read_text(errors='replace')[-1500:]}"
                              for n in ("sim", "agent", "ingest"))

        wait_for(lambda: (get_json(sim_url + "/sim/stats") or {}).get("done"), 400, lambda: "the feed's end: " + logs())
        # the stream's minutes: every whole minute between the first and the last candle, less both edges
        span = "SELECT min(bucket_start), max(bucket_start) FROM {gold}.candles WHERE interval = '1m'"
        wait_for(lambda: ns.rows(span)[0][0] is not None and ns.rows(span)[0][1] - ns.rows(span)[0][0]
                 >= timedelta(minutes=3), 180, lambda: "candles in PostgreSQL: " + logs())
        time.sleep(8)  # the agent's idle timer closes the last minute; then ingest and agent stop
        stop_all(procs, 30)
        first, last = ns.rows(span)[0]
        lo, hi = first + timedelta(minutes=1), last
        n_trades = "SELECT count(*) FROM {silver}.trades"

        def settled():  # Connect has written everything the topics hold, and the bronze sink flushed its objects
            before = (ns.rows(n_trades), ns.rows("SELECT count(*), max(emitted_at) FROM {gold}.candles"),
                      ns.rows("SELECT count(*), sum(records) FROM {bronze}.s3_objects"))
            time.sleep(4)
            return before == (ns.rows(n_trades), ns.rows("SELECT count(*), max(emitted_at) FROM {gold}.candles"),
                              ns.rows("SELECT count(*), sum(records) FROM {bronze}.s3_objects"))
        wait_for(settled, 120, "the sinks to settle")
        # a backfill reads late arrivals up to LATE_S past the range's end: that must be in the past. The feed has no
        # outage, so every frame of the range arrived within seconds of its trade: 30 s instead of the default 120 s
        wait_for(lambda: datetime.now(UTC) > hi + timedelta(seconds=LATE_S + 1), 180, "the late-arrival window to pass")
        want_trades, want_candles = _snapshot(ns, lo, hi)
        assert len({c[1] for c in want_candles}) >= 2 and len(want_trades) > 20, (lo, hi, len(want_trades), len(want_candles))

        fs = FlowSettings(trades_table=f"{ns.ns}_silver.trades", candles_table=f"{ns.ns}_gold.candles",
                          backfill_topic=t("upbit.raw"), backfill_s3_prefix=f"{ns.ns}/")
        for source in ("s3", "kafka"):
            _delete(ns, lo, hi)
            assert _snapshot(ns, lo, hi) == ([], [])
            r = rebuild(fs, lo, hi, source, late_s=LATE_S)
            got_trades, got_candles = _snapshot(ns, lo, hi)
            assert r.trades == len(want_trades), (source, r)
            assert got_trades == want_trades, source
            _same_candles(got_candles, want_candles)

        # a dry run says what it would replace and changes nothing
        dry = rebuild(fs, lo, hi, "s3", dry_run=True, late_s=LATE_S)
        assert dry.replace[fs.trades_table] == {"now": len(want_trades), "rebuilt": len(want_trades)}
        assert dry.replace[f"{fs.candles_table} 1m"] == {"now": len(want_candles), "rebuilt": len(want_candles)}
        assert _snapshot(ns, lo, hi)[0] == want_trades

        # a lost bronze object inside the range: refused, by the CLI too, naming the hour; nothing changed
        s3 = s3_client(ns.settings)
        objs = bronze.list_objects(s3, ns.settings.s3_bucket, f"{ns.ns}/", "upbit",
                                   int(lo.timestamp() * 1000), int(hi.timestamp() * 1000), topic=t("upbit.raw"))
        victim = next(o for o in objs if o.hour_start_ms <= lo.timestamp() * 1000 < o.hour_start_ms + 3_600_000
                      and o.start_offset > 0)
        s3.delete_object(Bucket=ns.settings.s3_bucket, Key=victim.key)
        hour = f"{victim.day}T{victim.hour:02d}"
        with psycopg.connect(ns.settings.pg_dsn(), autocommit=True) as c:  # a broken row the backfill would remove
            c.execute(f'DELETE FROM "{ns.ns}_gold".candles WHERE bucket_start = %s', (lo,))
        broken = _snapshot(ns, lo, hi)
        with pytest.raises(backfill.IncompleteSource) as e:
            rebuild(fs, lo, hi, "s3", late_s=LATE_S)
        assert hour in e.value.missing and hour in str(e.value)
        cli_env = {**os.environ, "COINPULSE_FLOWS_TRADES_TABLE": fs.trades_table, "COINPULSE_FLOWS_CANDLES_TABLE": fs.candles_table,
                   "COINPULSE_BACKFILL_TOPIC": fs.backfill_topic, "COINPULSE_BACKFILL_S3_PREFIX": fs.backfill_s3_prefix}
        p = subprocess.run([sys.executable, "-m", "coinpulse_flows", "backfill", "--source", "s3", "--from",
                            lo.isoformat(), "--to", hi.isoformat(), "--late-s", str(LATE_S)],
                           env=cli_env, capture_output=True, text=True,
                           timeout=180, check=False)
        assert p.returncode != 0 and hour in p.stderr and "nothing was changed" in p.stderr, p.stderr[-2000:]
        assert _snapshot(ns, lo, hi) == broken

        # Kafka: a log truncated past the range's start (as retention does) is refused as well
        raw = t("upbit.raw")
        c = kafka_consumer(f"{ns.ns}-probe", ns.settings)
        (inside,) = c.offsets_for_times([TopicPartition(raw, 0, int((lo + timedelta(seconds=30)).timestamp() * 1000))],
                                        timeout=10)
        c.close()
        for f in a.delete_records([TopicPartition(raw, 0, inside.offset)]).values():
            f.result(30)
        with pytest.raises(backfill.IncompleteSource) as e:
            rebuild(fs, lo, hi, "kafka", late_s=LATE_S)
        assert f"{lo:%Y-%m-%dT%H}" in e.value.missing
        assert _snapshot(ns, lo, hi) == broken
        print(json.dumps({"range": [str(lo), str(hi)], "trades": len(want_trades), "candles": len(want_candles)}))
    finally:
        stop_all(procs, 30)
        svc.shutdown()
