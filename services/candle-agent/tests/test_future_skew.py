"""A bad clock upstream cannot drag event time forward: a trade (or document) stamped far ahead of the wall clock is
a dead letter `future_timestamp` and candles go on; a restored watermark far ahead is reported (log + metric)."""

from __future__ import annotations

import json
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from coinpulse_candle_agent.app import CandleAgent
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.engine import CandleEngine
from coinpulse_candle_agent.settings import CandleSettings
from coinpulse_candle_agent.state import PartitionEngines
from pydantic import ValidationError

pytestmark = pytest.mark.unit
YEAR_MS = 365 * 86_400_000


class Table:
    def __init__(self):
        self.data: dict[bytes, bytes] = {}

    def send_changelog(self, *args, **kwargs):
        pass


class Topic:
    def __init__(self):
        self.sent: list[tuple[bytes, object]] = []

    def send_soon(self, key=None, value=None, **_):
        self.sent.append((key, value))


class Codec:  # values are the records themselves: no Avro needed for the rules under test
    def encode(self, rec):
        return dict(rec)

    def decode(self, raw):
        return json.loads(raw)


def agent(table: Table | None = None) -> CandleAgent:
    a = CandleAgent.__new__(CandleAgent)  # no Kafka: only what _handle_trades and metrics_text use
    a.s = CandleSettings(candle_mentions=False)
    a.metrics = Counter()
    a._unconfirmed = []
    a.max_future_ms = 300_000  # the default of COINPULSE_CANDLE_MAX_FUTURE_SKEW_S
    a.candles = PartitionEngines(table or Table(), lambda: CandleEngine(Timing(0, 60_000)))
    a.candles.max_future_ms, a.candles.name, a.candles.ahead_ms = a.max_future_ms, "candle", {}
    a.engine_sets = {a.s.candle_trade_topic: a.candles}
    a.trade_codec = Codec()
    a.out = {iv: Topic() for iv in ("1m", "5m", "1h")}
    a.candle_codecs = {iv: Codec() for iv in ("1m", "5m", "1h")}
    a.late_topic, a.late_codec, a.dlq, a.dlq_codec = Topic(), Codec(), Topic(), Codec()
    a.app = SimpleNamespace()
    return a


def rec(offset: int, seq: int, ts: int) -> SimpleNamespace:
    value = json.dumps({"market": "KRW-BTC", "sequential_id": seq, "trade_timestamp": ts, "price": 100.0 + seq,
                        "volume": 1.0, "ask_bid": "BID"}).encode()
    return SimpleNamespace(offset=offset, key=b"KRW-BTC", value=value)


def test_a_trade_a_year_ahead_is_dead_lettered_and_candles_go_on():
    a = agent()
    now = int(time.time() * 1000)
    minute = now - now % 60_000 - 5 * 60_000
    a._handle_trades(0, [rec(0, 1, minute + 1_000), rec(1, 2, now + YEAR_MS), rec(2, 3, minute + 2_000)])
    a._handle_trades(0, [rec(3, 4, minute + 61_000)])  # the next minute: the first one closes
    a._handle_trades(0, [rec(4, 5, now + 10_000)])  # ahead, but within the skew: accepted
    dead = [v for _, v in a.dlq.sent]
    assert len(dead) == 1 and dead[0]["reason"].startswith("future_timestamp")
    assert dead[0]["context"] == {"partition": "0", "offset": "1"}
    assert a.metrics["trades_future"] == 1 and a.metrics["dead_letters"] == 1
    assert a.metrics["trades_ok"] == 4 and a.metrics["trades_late"] == 0  # nothing after it counted late
    eng = a.candles.engines[0]
    assert eng.watermark < now + 60_000  # event time did not jump a year
    closed = [v for _, v in a.out["1m"].sent]
    assert (minute, 2) in [(c["bucket_start"], c["trade_count"]) for c in closed]


def test_a_document_a_year_ahead_is_a_future_timestamp_dead_letter():
    from coinpulse_candle_agent.trades import FutureTimestamp, check_not_future, dead_letter_reason

    now = int(time.time() * 1000)
    check_not_future("created_at", now + 1_000, now, 300_000)
    with pytest.raises(FutureTimestamp) as e:
        check_not_future("created_at", now + YEAR_MS, now, 300_000)
    assert dead_letter_reason(e.value).startswith("future_timestamp: created_at=")


def test_a_restored_watermark_far_ahead_is_reported_in_the_log_and_metrics(capsys):
    table = Table()
    ahead = int(time.time() * 1000) + YEAR_MS
    table.data[b"0|w"] = json.dumps({"w": ahead}).encode()
    a = agent(table)
    a.candles.get(0)
    assert a.candles.ahead_ms[0] > YEAR_MS - 60_000
    text = a.metrics_text()
    assert 'coinpulse_candle_watermark_ahead_ms{partition="0"}' in text
    assert "watermark_ahead_of_wall_clock" in capsys.readouterr().out


@pytest.mark.parametrize("v", [0, -1])
def test_the_skew_setting_must_be_positive(v):
    with pytest.raises(ValidationError, match="COINPULSE_CANDLE_MAX_FUTURE_SKEW_S"):
        CandleSettings(candle_max_future_skew_s=v)
