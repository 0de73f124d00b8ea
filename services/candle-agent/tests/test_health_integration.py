"""The agent's `/health` (what the dashboard probes) on a real worker: 200 with the trade topic's partitions once it
runs, and the event-time age once trades moved it; a path it does not serve is a 404, which the dashboard shows as a
wrong probe URL."""

from __future__ import annotations

import time

import httpx
import pytest
from coinpulse_common import topics
from coinpulse_common.avro import TopicCodec
from coinpulse_common.kafka import producer
from coinpulse_testing import synthetic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


def test_health_is_200_with_the_assignment_and_the_watermark_age_once_running(stack, topic_set, agents):
    a = agents(mentions="false", idle_after_ms=1_000)
    proc = a.start()
    url = proc.metrics_url.replace("/metrics", "/health")
    trade_topic = topic_set.topic("trade")
    deadline = time.monotonic() + 120
    body: dict = {}
    while True:  # Faust serves HTTP once its tables are recovered; the consumer then gets its partitions
        assert proc.poll() is None, a.log()[-3000:]
        try:
            r = httpx.get(url, timeout=5)
            body = r.json()
            if r.status_code == 200:
                break
            assert r.status_code == 503 and body["reason"], (r.status_code, r.text)
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"/health not 200 within 120 s: {body}\n{a.log()[-3000:]}"
        time.sleep(0.5)  # polling the agent until it answers (condition above; not synchronisation by sleeping)
    assert body["ok"] is True and "reason" not in body
    assert sorted(body["assigned"][trade_topic]) == [0, 1, 2]
    assert body["rebalancing"] is False and body["recovered"] is True
    assert body["watermark_age_s"]["candle"] is None  # no trade yet: no event time
    assert httpx.get(proc.metrics_url.replace("/metrics", "/no-such-page"), timeout=5).status_code == 404

    trades = synthetic.trades(MARKETS, int(time.time() * 1000) // 60_000 * 60_000 - 10 * 60_000, 5 * 60_000, 500,
                              seed=7)
    codec = TopicCodec(trade_topic, stack, schema_topic=topics.UPBIT_TRADE)
    p = producer(stack)
    for t in trades:
        p.produce(trade_topic, key=t.market.encode(), value=codec.encode(synthetic.trade_record(t)),
                  partition=MARKETS.index(t.market))
    assert p.flush(30) == 0
    newest_s = max(t.ts for t in trades) / 1000
    deadline = time.monotonic() + 120
    while True:  # the trades reach the engines: event time exists and is as old as the newest trade
        asked_at = time.time()
        body = httpx.get(url, timeout=5).json()
        age = body["watermark_age_s"]["candle"]
        if age is not None and body["counts"]["trades_ok"] == len(trades):
            break
        assert proc.poll() is None and time.monotonic() < deadline, (body, a.log()[-3000:])
        time.sleep(0.5)  # polling the agent's health for the processed trades
    assert body["ok"] is True
    # event time is at most the newest trade's time: its age, taken after `asked_at`, at least that old (0.1 s rounding)
    assert age >= asked_at - newest_s - 0.1, (age, asked_at - newest_s)
    # each partition read to its end: processed up to the highwater, so the idle timer may close its last bucket
    n_per = {p: sum(1 for t in trades if MARKETS.index(t.market) == p) for p in range(3)}
    deadline = time.monotonic() + 60
    while True:
        inputs = httpx.get(url, timeout=5).json()["inputs"][trade_topic]
        if all(inputs[str(p)]["state"] == "idle" for p in range(3)):
            break
        assert time.monotonic() < deadline, inputs
        time.sleep(0.5)  # polling until the timer's view says idle
    for p in range(3):
        i = inputs[str(p)]
        assert i["highwater"] == n_per[p] and i["processed_offset"] == n_per[p] - 1, (p, i)
        assert i["event_time_ms"] >= max(t.ts for t in trades if MARKETS.index(t.market) == p)  # the timer moves it on
    fetch = httpx.get(url, timeout=5).json()["fetch"]
    assert {k: v["state"] for k, v in fetch.items()} == {f"{trade_topic}/{p}": "active" for p in range(3)}, fetch
    assert all(fetch[f"{trade_topic}/{p}"]["highwater"] == n_per[p] for p in range(3)), fetch
    tasks = httpx.get(proc.metrics_url.replace("/metrics", "/debug/tasks"), timeout=5).text
    assert "advance_idle" in tasks or "_build_candles" in tasks, tasks[:2000]
