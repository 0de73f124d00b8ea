import gzip
from collections import Counter

import orjson
import pytest
from coinpulse_sim_upbit.fields import to_default, to_simple
from coinpulse_sim_upbit.hub import Conn, Faults, Hub, Stats
from coinpulse_sim_upbit.market import MarketGenerator, krw_tick
from coinpulse_sim_upbit.recording import generate_recording, read_recording, shift_times
from coinpulse_sim_upbit.server import RequestError, parse_request

pytestmark = pytest.mark.unit


def take(gen, n):
    out = []
    for ev in gen.events():
        out.append(ev)
        if len(out) >= n:
            return out


def test_generator_is_deterministic_for_a_seed():
    a = take(MarketGenerator(seed=3, start_ms=1_000_000), 300)
    b = take(MarketGenerator(seed=3, start_ms=1_000_000), 300)
    c = take(MarketGenerator(seed=4, start_ms=1_000_000), 300)
    assert a == b and a != c


def test_generator_events_are_in_time_order_with_unique_sids_per_market():
    evs = take(MarketGenerator(["KRW-BTC", "KRW-ETH"], seed=1, start_ms=0), 2000)
    times = [t for t, _ in evs]
    assert times == sorted(times)
    trades = [m for _, m in evs if m["type"] == "trade"]
    per = Counter((m["code"], m["sequential_id"]) for m in trades)
    assert max(per.values()) == 1
    sids = {m["code"]: {x["sequential_id"] for x in trades if x["code"] == m["code"]} for m in trades}
    assert sids["KRW-BTC"] & sids["KRW-ETH"], "sids should collide across markets, as on Upbit"


def test_generated_prices_sit_on_the_krw_tick_grid():
    for _, m in take(MarketGenerator(["KRW-BTC", "KRW-DOGE"], seed=2, start_ms=0), 500):
        if m["type"] == "trade":
            tick = krw_tick(m["trade_price"])
            assert abs(m["trade_price"] / tick - round(m["trade_price"] / tick)) < 1e-6
            assert m["ask_bid"] in ("ASK", "BID") and m["trade_volume"] > 0


def test_simple_default_round_trip():
    for _, m in take(MarketGenerator(seed=5, start_ms=0), 200):
        s = to_simple(m)
        assert "ty" in s and "type" not in s
        assert to_default(s) == m


def test_generate_recording_is_reproducible_and_readable(tmp_path):
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    n = generate_recording(a, 0.5, seed=9, markets=["KRW-BTC", "KRW-XRP"])
    generate_recording(b, 0.5, seed=9, markets=["KRW-BTC", "KRW-XRP"])
    assert a.read_bytes() == b.read_bytes() and n > 10
    with gzip.open(a) as f:
        first = orjson.loads(f.readline())
    assert "ty" in first["msg"] and isinstance(first["recv_ts"], float)
    rows = list(read_recording(a))
    assert len(rows) == n and all("type" in m for _, m in rows)


def test_shift_times_moves_dates_too():
    m = {"type": "trade", "trade_timestamp": 0, "timestamp": 5, "trade_date": "1970-01-01", "trade_time": "00:00:00"}
    s = shift_times(m, 86_400_000 + 3_600_000)
    assert (s["trade_date"], s["trade_time"], s["timestamp"]) == ("1970-01-02", "01:00:00", 86_400_000 + 3_600_005)


def _hub_with_trades(n: int, faults: Faults | None = None) -> Hub:
    hub = Hub(faults or Faults(), seed=1)
    for i in range(n):
        hub.publish("trade", "KRW-BTC", {"code": "KRW-BTC", "sequential_id": 100 + i, "trade_timestamp": 1000 + i,
                                         "trade_price": 1.0, "trade_volume": 1.0, "ask_bid": "BID"})
    return hub


def test_trades_page_is_newest_first_and_cursor_pages_backwards():
    hub = _hub_with_trades(7)
    p1 = hub.trades_page("KRW-BTC", 3, None)
    assert [t["sequential_id"] for t in p1] == [106, 105, 104]
    p2 = hub.trades_page("KRW-BTC", 3, p1[-1]["sequential_id"])
    assert [t["sequential_id"] for t in p2] == [103, 102, 101]
    assert [t["sequential_id"] for t in hub.trades_page("KRW-BTC", 3, 101)] == [100]
    assert hub.trades_page("KRW-ETH", 3, None) is None
    assert set(p1[0]) == {"market", "trade_date_utc", "trade_time_utc", "timestamp", "trade_price", "trade_volume",
                          "prev_closing_price", "change_price", "ask_bid", "sequential_id"}


def test_history_keeps_each_trade_once():
    hub = _hub_with_trades(3)
    hub.publish("trade", "KRW-BTC", {"code": "KRW-BTC", "sequential_id": 100, "trade_timestamp": 1000,
                                     "trade_price": 1.0, "trade_volume": 1.0, "ask_bid": "BID"})
    assert len(hub.all_trades()) == 3


def test_connection_faults_duplicate_and_reorder_but_lose_nothing():
    faults = Faults(duplicate_rate=0.3, reorder_window=5, malformed_rate=0.1)
    c = Conn(1, {"trade": {"M"}}, "DEFAULT", faults, seed=1, stats=Stats())
    frames = [str(i).encode() for i in range(200)]
    for f in frames:
        c.push(f)
    c.flush_window()
    out = list(c.queue)
    good = [f for f in out if f in set(frames)]
    assert set(good) == set(frames)
    assert len(good) > len(frames)  # duplicates
    assert good != sorted(set(good), key=int)  # reordered
    assert c.stats.malformed_sent > 0 and len(out) == len(good) + c.stats.malformed_sent


@pytest.mark.parametrize("req,name", [("nope", "WRONG_FORMAT"), ('[{"type":"trade","codes":["KRW-BTC"]}]', "NO_TICKET"),
                                      ('[{"ticket":"x"}]', "NO_TYPE"), ('[{"ticket":"x"},{"type":"trade"}]', "NO_CODES"),
                                      ('[{"ticket":"x"},{"type":"trade","codes":["A"]},{"format":"XML"}]',
                                       "INVALID_PARAM")])
def test_bad_requests_get_upbit_error_names(req, name):
    with pytest.raises(RequestError) as e:
        parse_request(req)
    assert e.value.name == name


def test_request_parsing_accepts_depth_suffix_and_camel_case():
    subs, fmt, rt, snap = parse_request('[{"ticket":"x"},{"format":"SIMPLE"},{"type":"orderbook","codes":'
                                        '["krw-btc.15"],"isOnlyRealtime":true},{"type":"trade","codes":["KRW-ETH"],'
                                        '"is_only_snapshot":true}]')
    assert subs == {"orderbook": {"KRW-BTC"}, "trade": {"KRW-ETH"}} and fmt == "SIMPLE"
    assert rt == {"orderbook"} and snap == {"trade"}


def test_a_client_too_far_behind_is_cut_off():
    c = Conn(1, {"trade": {"M"}}, "DEFAULT", Faults(), seed=1, stats=Stats(), max_queue=20_000)
    for _ in range(20_002):
        c.push(b"x")
    assert c.too_slow and c.closed and len(c.queue) == 20_001
    c.push(b"y")
    assert len(c.queue) == 20_001


def _replayed_trades(path, keep_times, now_ms):
    from coinpulse_sim_upbit.__main__ import _recording_events

    return [m for _, m in _recording_events(path, None, keep_times, Hub(), now_ms=now_ms) if m["type"] == "trade"]


def test_a_replay_shifted_in_time_is_a_new_set_of_trades(tmp_path):
    rec = tmp_path / "r.jsonl.gz"
    generate_recording(rec, 2, seed=3, markets=["KRW-BTC", "KRW-ETH"])
    # a demo replaying at speed 1 is stopped after a minute, the next one starts then: what the first one published
    # (trades up to its stop) and what the second publishes share no (market, sequential_id), as on Upbit
    t0 = 1_900_000_000_000
    first = [m for m in _replayed_trades(rec, False, t0) if m["trade_timestamp"] < t0 + 60_000]
    second = _replayed_trades(rec, False, t0 + 60_000)
    ids = lambda ts: {(m["code"], m["sequential_id"]) for m in ts}  # noqa: E731
    assert len(ids(first)) == len(first) > 50 and len(ids(second)) == len(second) > 100
    assert not ids(first) & ids(second)
    unshifted = {(m["code"], m["sequential_id"]) for _, m in read_recording(rec) if m["type"] == "trade"}
    assert not ids(second) & unshifted, "the recorded ids are not reused"
    for trades in (first, second):
        for code in ("KRW-BTC", "KRW-ETH"):
            sids = [m["sequential_id"] for m in trades if m["code"] == code]
            assert sids == sorted(sids) and len(set(sids)) == len(sids), "ids rise strictly per market"
            # Upbit's shape: trade time in ms x 1000 + a counter
            for m in trades:
                if m["code"] == code:
                    assert m["sequential_id"] // 1000 >= m["trade_timestamp"]
                    assert m["sequential_id"] - m["trade_timestamp"] * 1000 < 1000


def test_keep_times_replays_the_recorded_ids(tmp_path):
    rec = tmp_path / "r.jsonl.gz"
    generate_recording(rec, 1, seed=3, markets=["KRW-BTC"])
    recorded = [m for _, m in read_recording(rec) if m["type"] == "trade"]
    kept = _replayed_trades(rec, True, 1_900_000_000_000)
    assert [m["sequential_id"] for m in kept] == [m["sequential_id"] for m in recorded]
    assert [m["trade_timestamp"] for m in kept] == [m["trade_timestamp"] for m in recorded]
