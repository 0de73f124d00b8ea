"""The shared world: deterministic from the seed (in and across processes), consistent over any range, and the
couplings visible in a plain cross-correlation of a few hours of per-minute data."""

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest
from coinpulse_simworld import (
    DAY_MINUTES,
    MINUTE_MS,
    ScenarioError,
    World,
    krw_tick,
    load_scenario,
    minute_docs,
    minute_trades,
    parse_scenario,
)

pytestmark = pytest.mark.unit

SC = load_scenario("default")
DAY = 20_424  # 2025-12-02 (UTC epoch days); any day works
START = DAY * DAY_MINUTES + 9 * 60  # 09:00 UTC


def digest(world: World, start: int, minutes: int) -> str:
    h = hashlib.sha256()
    for code in world.markets:
        s = world.series(code, start, start + minutes)
        h.update(repr((s.close, s.ret, s.mentions, s.sentiment)).encode())
        h.update(repr(minute_trades(world, code, start + 7)).encode())
    for m in range(start, start + minutes, 13):
        h.update(repr(minute_docs(world, m)).encode())
    return h.hexdigest()


DIGEST_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from test_world import digest, SC, World, START
w = World(SC)
w.series("KRW-BTC", START + 3000, START + 3100)  # touch other days first: order must not matter
print(digest(w, START, 180))
"""


def test_same_seed_same_world_and_another_seed_another():
    assert digest(World(SC), START, 120) == digest(World(load_scenario("default")), START, 120)
    other = parse_scenario({"seed": SC.seed + 1, "markets": {c: {} for c in SC.codes}})
    assert World(other).series("KRW-BTC", START, START + 60).ret != World(SC).series("KRW-BTC", START, START + 60).ret


@pytest.mark.slow
def test_separate_processes_compute_the_same_world():
    import pathlib

    here = str(pathlib.Path(__file__).parent)
    outs = {subprocess.run([sys.executable, "-c", DIGEST_SCRIPT.format(here=here)], capture_output=True, text=True,
                           check=True, timeout=120).stdout.strip() for _ in range(2)}
    assert outs == {digest(World(SC), START, 180)}


def test_any_range_and_any_market_subset_give_the_same_minutes():
    w = World(SC)
    full = w.series("KRW-ETH", START - 30, START + 90)
    part = World(SC).series("KRW-ETH", START + 20, START + 40)
    assert part.close == full.close[50:70] and part.mentions == full.mentions[50:70]
    alone = World(SC.subset(["KRW-ETH"])).series("KRW-ETH", START - 30, START + 90)
    assert alone == full
    with pytest.raises(ScenarioError, match="KRW-NOPE"):
        SC.subset(["KRW-NOPE"])


def test_days_join_and_prices_stay_on_the_grid_near_their_level():
    w = World(SC)
    for code in SC.codes:
        first = (DAY + 1) * DAY_MINUTES
        assert math.isclose(w.ret(code, first), math.log(w.close(code, first) / w.close(code, first - 1)))
        s = w.series(code, DAY * DAY_MINUTES, (DAY + 2) * DAY_MINUTES)
        assert all(abs(c / krw_tick(c) - round(c / krw_tick(c))) < 1e-6 for c in s.close[::97])
        ratio = max(s.close) / min(s.close)
        assert ratio < 1.6, f"{code}: the price wandered off its level ({ratio})"
        sd = float(np.std(s.ret))
        assert 0.5 * SC.markets[code].sigma < sd < 3 * SC.markets[code].sigma, (code, sd)


def ccf(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """corr(x_t, y_{t+lag})."""
    a, b = (x[: len(x) - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: len(y) + lag])
    return float(np.corrcoef(a, b)[0, 1])


LAGS = range(-10, 11)
HOURS = 6


@pytest.fixture(scope="module")
def observed():
    """Six hours of what a crawler and the candle agent would count: documents per coin per minute (drawn), their
    net polarity, and the returns."""
    w = World(SC)
    n = HOURS * 60
    counts = {c: np.zeros(n) for c in SC.codes}
    net = {c: np.zeros(n) for c in SC.codes}
    for m in range(START, START + n):
        for d in minute_docs(w, m):
            if d.market:
                counts[d.market][m - START] += 1
                net[d.market][m - START] += d.polarity
    rets = {c: np.array(w.series(c, START, START + n).ret) for c in SC.codes}
    expected = {c: np.array(w.series(c, START, START + n).mentions) for c in SC.codes}
    return counts, net, rets, expected


def signed_lag(code: str) -> int:
    c = SC.markets[code].coupling
    return -c.lag if c.kind == "community_follows" else c.lag


@pytest.mark.parametrize("code", [c for c in SC.codes if SC.markets[c].coupling.kind != "none"])
def test_a_coupled_market_shows_its_link_at_its_lag(observed, code):
    counts, net, rets, expected = observed
    lag = signed_lag(code)
    # the world's expected mentions: the peak is exactly at the lag
    exp_cc = {L: ccf(expected[code], np.abs(rets[code]), L) for L in LAGS}
    assert max(exp_cc, key=exp_cc.get) == lag and exp_cc[lag] > 0.4, exp_cc
    # drawn documents, as the marts will count them: still the peak at the lag, well above every other lag sign
    cc = {L: ccf(counts[code], np.abs(rets[code]), L) for L in LAGS}
    assert max(cc, key=cc.get) == lag and cc[lag] > 0.25, cc
    assert max(cc[L] for L in LAGS if L * lag <= 0) < cc[lag] / 2, cc
    # sentiment follows (or leads) the sign of the move
    sc = {L: ccf(net[code], rets[code], L) for L in LAGS}
    assert sc[lag] > 0.15 and sc[lag] >= max(sc.values()) - 0.1, sc


@pytest.mark.parametrize("code", ["KRW-DOGE", "KRW-ADA", "KRW-SUI", "KRW-LINK"])
def test_a_control_market_shows_no_link(observed, code):
    counts, net, rets, _ = observed
    assert SC.markets[code].coupling.kind == "none"
    assert counts[code].sum() > 50, "a control still has mentions"
    worst = max(abs(ccf(counts[code], np.abs(rets[code]), L)) for L in LAGS if L)
    worst_signed = max(abs(ccf(net[code], rets[code], L)) for L in LAGS if L)
    assert worst < 0.2 and worst_signed < 0.2, (worst, worst_signed)


def test_drawn_documents_follow_the_expected_intensity_and_sentiment():
    w = World(SC)
    n, lam, pol, pos_exp = 0, 0.0, 0, 0.0
    for m in range(START, START + 600):
        rate, sent = w.mention_rate("KRW-BTC", m)
        lam += rate
        pos_exp += rate * sent * SC.community.polar_share
        for d in minute_docs(w, m):
            if d.market == "KRW-BTC":
                n += 1
                pol += d.polarity
    assert abs(n - lam) < 4 * math.sqrt(lam), (n, lam)
    assert abs(pol - pos_exp) < 4 * math.sqrt(lam), (pol, pos_exp)
    docs = [d for m in range(START, START + 30) for d in minute_docs(w, m)]
    assert all(m * MINUTE_MS <= d.ts_ms < (m + 1) * MINUTE_MS for m in range(START, START + 30)
               for d in minute_docs(w, m))
    assert [d.ts_ms for d in docs] == sorted(d.ts_ms for d in docs) and all(d.ts_ms % 1000 == 0 for d in docs)
    assert any(d.market is None for d in docs) and any(d.post for d in docs) and any(not d.post for d in docs)


@pytest.mark.parametrize("code", ["KRW-BTC", "KRW-XRP", "KRW-ADA", "KRW-OM"])
def test_trades_aggregated_into_candles_reproduce_the_world_returns(code):
    w = World(SC)
    closes = {}
    for m in range(START - 1, START + 120):
        trades = minute_trades(w, code, m)
        assert trades and all(m * MINUTE_MS <= t.ts_ms < (m + 1) * MINUTE_MS for t in trades)
        assert [t.ts_ms for t in trades] == sorted(t.ts_ms for t in trades)
        sids = [t.sid for t in trades]
        assert sids == sorted(set(sids)) and all(t.sid // 1000 == t.ts_ms for t in trades)
        assert all(abs(t.price / krw_tick(t.price) - round(t.price / krw_tick(t.price))) < 1e-6 for t in trades)
        closes[m] = trades[-1].price  # the candle's close: the minute's last trade
    for m in range(START, START + 120):
        assert abs(math.log(closes[m] / closes[m - 1]) - w.ret(code, m)) < 1e-12
    assert minute_trades(w, code, START) == minute_trades(World(SC), code, START)


@pytest.mark.parametrize("data,match", [
    ({"markets": {"KRW-BTC": {}}}, "seed is required"),
    ({"seed": 1}, "at least one"),
    ({"seed": 1, "markets": {"KRW-BTC": {"sigmaa": 1}}}, "unknown keys"),
    ({"seed": 1, "markets": {"KRW-BTC": {"coupling": "sometimes"}}}, "coupling kind"),
    ({"seed": 1, "markets": {"KRW-BTC": {"coupling": {"kind": "community_leads"}}}}, "coupling.lag"),
    ({"seed": 1, "markets": {"KRW-FOO": {}}}, "price is required"),
    ({"seed": 1, "markets": {"KRW-BTC": {"sigma": -1}}}, "sigma"),
    ({"seed": 1, "colour": "red", "markets": {"KRW-BTC": {}}}, "top-level"),
])
def test_bad_scenarios_are_refused_with_the_reason(data, match):
    with pytest.raises(ScenarioError, match=match):
        parse_scenario(data, "t.toml")


def test_scenario_files_load_from_a_path_and_report_bad_toml(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('seed = 5\n[markets.KRW-BTC]\ncoupling = { kind = "community_follows", lag = 2 }\n')
    s = load_scenario(p)
    assert s.seed == 5 and s.markets["KRW-BTC"].coupling.lag == 2 and s.markets["KRW-BTC"].aliases
    p.write_text("seed = = 5")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(p)
    with pytest.raises(ScenarioError, match="no shipped scenario"):
        load_scenario("nope")
