"""linkstats: the lead–lag correlations equal a brute-force pandas computation; a planted lead (or follow) is found
at its lag with a small p-value and the right verdict; independent autocorrelated series rarely get a verdict (the
block permutation keeps its level); the event study's interval covers a planted post-spike mean; too little data is
`insufficient_data`, never a NaN. Every series is generated from a fixed seed, so every outcome is deterministic."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from coinpulse_flows import linkstats as ls
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

pytestmark = pytest.mark.unit

N = 1440  # one day of minutes
CFG = ls.LinkConfig()  # the defaults of the flow settings: lags -15..15, 999 surrogates, blocks of 30 min


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float = 1.0) -> np.ndarray:
    return lfilter([1.0], [1.0, -phi], rng.normal(0.0, sd, n))


def community(rng, n=N, drive=None) -> np.ndarray:
    """Mention counts: Poisson around an autocorrelated intensity (bursts of several minutes), optionally driven."""
    z = ar1(rng, n, 0.9, 0.3) + (0.0 if drive is None else drive)
    return rng.poisson(np.exp(0.7 + z)).astype(float)


def market(rng, n=N, drive=None, vol=None) -> np.ndarray:
    """1-minute log returns: autocorrelated noise with volatility clusters, plus an optional drift and vol factor."""
    clusters = np.exp(ar1(rng, n, 0.97, 0.1))
    r = 1e-3 * clusters * ar1(rng, n, 0.2) * (1.0 if vol is None else vol)
    return r + (0.0 if drive is None else drive)


def shift(a: np.ndarray, k: int) -> np.ndarray:
    """a delayed by k minutes (out[t] = a[t - k]), zeros where undefined."""
    out = np.zeros_like(a)
    out[k:] = a[: len(a) - k] if k else a
    return out


def standard(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std()


def sentiment_of(rng, mentions: np.ndarray) -> np.ndarray:
    return np.where(mentions > 0, np.tanh(rng.normal(0, 1, len(mentions))), np.nan)


def no_nan(obj) -> bool:
    """True when no float anywhere in the result is NaN or infinite."""
    if dataclasses.is_dataclass(obj):
        return all(no_nan(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return all(no_nan(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return all(no_nan(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


def pandas_lagged(x: np.ndarray, y: np.ndarray, lags) -> list[float]:
    sx, sy = pd.Series(x), pd.Series(y)
    return [sx.corr(sy.shift(-int(k))) for k in lags]


def test_correlation_per_lag_equals_pandas_with_gaps():
    rng = np.random.default_rng(7)
    m = community(rng)
    r = market(rng, drive=2e-4 * shift(standard(m), 3))
    r[:37] = np.nan  # before the first candle
    r[700:705] = np.nan
    s = sentiment_of(rng, m)  # NaN in every minute without a mention
    for x, y in ((m, r), (m, np.abs(r)), (s, r)):
        got, n = ls.lagged_corr(x, y, CFG.lags)
        want = pandas_lagged(x, y, CFG.lags)
        assert np.allclose(got, want, atol=1e-9, rtol=0), np.max(np.abs(got - want))
        pairs = [int((pd.Series(x).notna() & pd.Series(y).shift(-int(k)).notna()).sum()) for k in CFG.lags]
        assert n.tolist() == pairs


def test_surrogate_correlations_equal_pandas_on_the_same_permutations():
    """The matrix-product null equals pandas' corr of each permuted series at each lag (gaps on both sides)."""
    rng = np.random.default_rng(8)
    m = community(rng)
    r = market(rng)  # complete: prefix sums; with a gap: matrix products of the masks
    gap = r.copy()
    gap[:20] = np.nan
    s = sentiment_of(rng, m)
    perms = ls.block_permutations(N, 30, 30, 3)
    for x in (m, s):
        ys = (r, gap, np.abs(gap))
        got = ls.null_corr(x, list(ys), CFG.max_lag, perms)
        for b in range(len(perms)):
            xs = x[perms[b]]
            for y, g in zip(ys, got, strict=True):
                assert np.allclose(g[b], pandas_lagged(xs, y, CFG.lags), atol=1e-9, rtol=0)


def test_block_permutations_shuffle_whole_blocks_and_are_seeded():
    n, block = 1000, 30  # not a multiple: one shorter block
    p = ls.block_permutations(n, block, 50, 11)
    assert p.shape == (50, n)
    assert all(sorted(row) == list(range(n)) for row in p)
    # within a block the minutes stay consecutive (circularly): a break only where one block ends
    breaks = ((p[:, 1:] - p[:, :-1]) % n != 1).sum(axis=1)
    assert breaks.max() <= -(-n // block)
    assert np.array_equal(p, ls.block_permutations(n, block, 50, 11))
    ls.block_permutations.cache_clear()
    assert np.array_equal(p, ls.block_permutations(n, block, 50, 11))  # the same after a fresh draw
    assert not np.array_equal(p, ls.block_permutations(n, block, 50, 12))
    assert len({tuple(row) for row in p}) == 50


@pytest.mark.parametrize(("metric", "lead"), [("mentions_ret", 1), ("mentions_ret", 4), ("mentions_ret", 9),
                                            ("mentions_absret", 1), ("mentions_absret", 7)])
def test_mentions_leading_the_market_is_found_at_its_lag(metric, lead):
    rng = np.random.default_rng(100 + lead)
    m = community(rng)
    later = shift(standard(m), lead)  # the mentions `lead` minutes earlier
    # returns drift with them (mentions_ret), or their volatility grows with them (mentions_absret)
    r = market(rng, drive=4e-4 * later) if metric == "mentions_ret" else market(rng, vol=np.exp(0.4 * later))
    res = ls.market_link(r, m, sentiment_of(rng, m), np.zeros(N, bool), CFG)
    s = res.summary[metric]
    assert (s.best_lag, s.verdict) == (lead, "community_leads"), s
    assert s.p_value < 0.01 and s.p_adjusted < CFG.alpha and s.best_corr > 0
    row = next(r for r in res.lead_lag[metric] if r.lag == lead)
    assert row.significant and row.corr == s.best_corr
    assert res.summary["sentiment_ret"].verdict == "no_link"  # sentiment carries nothing here
    assert no_nan(res)


@pytest.mark.parametrize("follow", [2, 6])
def test_community_following_the_market_is_community_follows(follow):
    rng = np.random.default_rng(200 + follow)
    r = market(rng)
    # mentions rise `follow` minutes after a return
    m = community(rng, drive=0.6 * shift(standard(r), follow))
    s = ls.market_link(r, m, sentiment_of(rng, m), np.zeros(N, bool), CFG).summary["mentions_ret"]
    assert (s.best_lag, s.verdict) == (-follow, "community_follows"), s
    assert s.p_value < 0.01


def test_same_minute_link_is_together_and_sentiment_lead_is_found():
    rng = np.random.default_rng(300)
    m = community(rng)
    sent = sentiment_of(rng, m)
    drive = 3e-4 * standard(m) + 4e-4 * shift(np.nan_to_num(sent), 2)  # mentions now, sentiment 2 minutes ahead
    r = market(rng, drive=drive)
    res = ls.market_link(r, m, sent, np.zeros(N, bool), CFG)
    assert (res.summary["mentions_ret"].best_lag, res.summary["mentions_ret"].verdict) == (0, "together")
    s = res.summary["sentiment_ret"]
    assert (s.best_lag, s.verdict) == (2, "community_leads") and s.p_value < 0.01
    assert s.n == int(np.isfinite(sent[:-2]).sum())  # pairs at the best lag: minutes with a sentiment


def test_bonferroni_and_significance_follow_the_per_lag_p_values():
    rng = np.random.default_rng(301)
    m = community(rng)
    r = market(rng, drive=1.5e-4 * shift(standard(m), 5))
    res = ls.market_link(r, m, sentiment_of(rng, m), np.zeros(N, bool), CFG)
    for metric, rows in res.lead_lag.items():
        s = res.summary[metric]
        tested = [x for x in rows if x.corr is not None]
        assert [x.lag for x in rows] == list(range(-15, 16))
        assert all(1 / (CFG.permutations + 1) <= x.p_value <= 1 for x in tested)
        assert all(x.significant == (x.p_value < CFG.alpha / len(tested)) for x in tested)
        best = max(tested, key=lambda x: abs(x.corr))
        assert (s.best_lag, s.p_value) == (best.lag, best.p_value)
        assert s.p_adjusted == pytest.approx(min(1.0, best.p_value * len(tested)), rel=1e-12)


def test_a_refresh_is_deterministic():
    rng = np.random.default_rng(302)
    m = community(rng)
    r = market(rng, drive=1e-4 * shift(standard(m), 2))
    args = (r, m, sentiment_of(rng, m), m > 8)
    a = ls.market_link(*args, CFG)
    ls.block_permutations.cache_clear()
    assert ls.market_link(*args, CFG) == a
    other = ls.market_link(*args, dataclasses.replace(CFG, seed=1))
    assert [x.p_value for x in other.lead_lag["mentions_ret"]] != [x.p_value for x in a.lead_lag["mentions_ret"]]


FPR_CFG = ls.LinkConfig(max_lag=5, permutations=299, block=30, min_points=120)  # smallest adjusted p 11/300


@pytest.mark.slow
def test_independent_autocorrelated_series_rarely_get_a_verdict():
    """200 independent pairs (bursty mentions, volatility clusters): the corrected verdict stays near alpha, and so
    does the uncorrected per-lag rejection rate, which the blocks keep honest despite the autocorrelation."""
    n, seeds = 720, range(200)
    verdicts = {m: 0 for m in ls.METRICS}
    lag0 = {m: 0 for m in ls.METRICS}
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        m = community(rng, n)
        r = market(rng, n)
        res = ls.market_link(r, m, sentiment_of(rng, m), np.zeros(n, bool), FPR_CFG)
        for metric, s in res.summary.items():
            verdicts[metric] += s.verdict != "no_link"
            lag0[metric] += next(x for x in res.lead_lag[metric] if x.lag == 0).p_value < 0.05
    assert all(v <= 0.10 * len(seeds) for v in verdicts.values()), verdicts
    assert all(v <= 0.10 * len(seeds) for v in lag0.values()), lag0


@pytest.mark.slow
def test_shuffling_single_minutes_would_not_be_honest():
    """Why blocks: on the same independent pairs, a permutation of single minutes breaks the mentions' bursts and
    calls |return| (volatility clusters) linked far more often than alpha."""
    n, seeds = 720, range(200)
    iid = dataclasses.replace(FPR_CFG, block=1)
    verdicts = 0
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        m = community(rng, n)
        r = market(rng, n)
        verdicts += ls.lead_lag_group(m, {"a": np.abs(r)}, iid)["a"][1].verdict != "no_link"
    assert verdicts > 0.12 * len(seeds), verdicts


def test_event_study_interval_covers_the_planted_post_spike_mean():
    drift, length = 5e-4, 15  # every event is followed by 15 minutes of +0.05 % per minute
    covered = {h: 0 for h in CFG.horizons}
    draws = 200
    for seed in range(draws):
        rng = np.random.default_rng(20_000 + seed)
        r = rng.normal(0, 1e-3, N)
        spikes = np.zeros(N, bool)
        starts = rng.choice(np.arange(5, N - 40, 45), size=20, replace=False)  # events 45+ minutes apart
        spikes[starts] = True
        spikes[starts[:5] + 1] = True  # two-minute bursts count once
        for t in starts:
            r[t + 1:t + 1 + length] += drift
        rows = {e.horizon: e for e in ls.event_study(r, spikes, CFG.horizons)}
        for h, e in rows.items():
            assert e.n_events == 20
            true = drift * min(h, length)
            covered[h] += e.ret_ci_low <= true <= e.ret_ci_high
            assert e.absret_ci_low < e.mean_absret < e.absret_ci_high
    # a 95 % interval: coverage between 88 % and 99.5 % over 200 seeded draws (binomial sd 1.5 %)
    assert all(0.88 * draws <= c <= 0.995 * draws for c in covered.values()), covered
    # one draw, by hand: the cumulative return after each event, its mean and t-interval
    e = rows[5]
    cum = np.array([r[t + 1:t + 6].sum() for t in sorted(starts)])
    half = 2.093024054408263 * cum.std(ddof=1) / math.sqrt(20)  # t(0.975, 19)
    assert (e.mean_ret, e.ret_ci_low, e.ret_ci_high) == pytest.approx((cum.mean(), cum.mean() - half,
                                                                        cum.mean() + half), rel=1e-9)


def test_event_study_skips_events_without_a_full_horizon_and_reports_none_below_two():
    r = np.full(100, 1e-3)
    r[50:53] = np.nan
    spikes = np.zeros(100, bool)
    spikes[[10, 48, 95]] = True  # 48: its 5-minute horizon has a gap; 95: runs off the end at 5 and 30
    rows = {e.horizon: e for e in ls.event_study(r, spikes, (1, 5, 30))}
    assert rows[1].n_events == 3 and rows[1].mean_ret == pytest.approx(1e-3)
    assert rows[1].ret_ci_low == pytest.approx(1e-3) and rows[1].ret_ci_high == pytest.approx(1e-3)  # no spread
    assert (rows[5].n_events, rows[30].n_events) == (1, 1)
    assert rows[5].mean_ret == pytest.approx(5e-3) and rows[5].ret_ci_low is None and rows[5].ret_ci_high is None
    none = ls.event_study(r, np.zeros(100, bool), (5,))[0]
    assert (none.n_events, none.mean_ret, none.ret_ci_low, none.mean_absret) == (0, None, None, None)


@pytest.mark.parametrize("case", ["short", "no_mentions", "no_candles", "empty", "constant_price", "sparse_sentiment"])
def test_insufficient_data_is_a_verdict_not_a_nan(case):
    rng = np.random.default_rng(5)
    n = {"short": CFG.min_points - 1, "empty": 0}.get(case, N)
    m = community(rng, n) if n else np.zeros(0)
    r = market(rng, n) if n else np.zeros(0)
    s = sentiment_of(rng, m)
    if case == "no_mentions":
        m, s = np.zeros(n), np.full(n, np.nan)
    if case == "no_candles":
        r = np.full(n, np.nan)
    if case == "constant_price":
        r = np.zeros(n)
    if case == "sparse_sentiment":
        s = np.full(n, np.nan)
        s[::20] = 0.3 + 0.1 * rng.normal(size=len(s[::20]))  # 72 minutes with a sentiment < min_points
    res = ls.market_link(r, m, s, np.zeros(n, bool), CFG)
    insufficient = {k for k, v in res.summary.items() if v.verdict == "insufficient_data"}
    expected = {"sparse_sentiment": {"sentiment_ret"}}.get(case, set(ls.METRICS))
    assert insufficient == expected
    for k in insufficient:
        v = res.summary[k]
        assert (v.best_lag, v.best_corr, v.p_value, v.p_adjusted) == (None, None, None, None)
        assert all(x.p_value is None and not x.significant for x in res.lead_lag[k])
        assert len(res.lead_lag[k]) == 2 * CFG.max_lag + 1
    assert len(res.events) == len(CFG.horizons)
    assert no_nan(res)


def test_series_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="share one grid"):
        ls.market_link(np.zeros(10), np.zeros(9), np.zeros(10), np.zeros(10, bool), CFG)


finite_or_nan = st.one_of(st.floats(-1e3, 1e3), st.just(float("nan")))


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.tuples(finite_or_nan, finite_or_nan), min_size=0, max_size=80),
       a=st.floats(0.01, 100), b=st.floats(-100, 100))
def test_lagged_corr_properties(xs, a, b):
    """Bounded or NaN; corr(x, y, k) = corr(y, x, -k); unchanged by a positive affine map of x; pairs counted."""
    x = np.array([p[0] for p in xs], float)
    y = np.array([p[1] for p in xs], float)
    lags = np.arange(-4, 5)
    r, n = ls.lagged_corr(x, y, lags)
    assert np.all(np.isnan(r) | (np.abs(r) <= 1))
    r2, n2 = ls.lagged_corr(y, x, -lags)
    assert np.array_equal(n, n2) and np.allclose(r, r2, equal_nan=True, atol=1e-9)
    r3, _ = ls.lagged_corr(a * x + b, y, lags)
    ok = np.isfinite(r) & np.isfinite(r3)
    # an affine map can only make a (nearly) constant side exactly constant or not, never change a defined corr
    assert np.allclose(r[ok], r3[ok], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), gaps=st.floats(0, 1))
def test_market_link_output_is_nan_free_and_consistent(seed, n, gaps):
    rng = np.random.default_rng(seed)
    cfg = ls.LinkConfig(max_lag=3, permutations=199, block=10, min_points=20, horizons=(1, 5))
    m = rng.poisson(rng.uniform(0, 3), n).astype(float)
    r = rng.normal(0, 1e-3, n)
    r[rng.random(n) < gaps] = np.nan
    res = ls.market_link(r, m, sentiment_of(rng, m), m >= 4, cfg)
    assert no_nan(res)
    for metric, s in res.summary.items():
        assert s.verdict in ls.VERDICTS
        if s.p_adjusted is not None:
            assert 0 < s.p_value <= s.p_adjusted <= 1
        assert all(x.n <= n for x in res.lead_lag[metric])


@pytest.mark.parametrize(("update", "name"), [
    ({"link_permutations": 99}, "link_permutations"),  # 31 lags / 100 > 0.05: nothing could be significant
    ({"link_alpha": 0.0}, "link_alpha"),
    ({"link_max_lag_minutes": 0}, "link_max_lag_minutes"),
    ({"link_block_minutes": 400}, "link_lookback_minutes"),  # fewer than 4 blocks in a day
    ({"link_min_points": 5}, "link_min_points"),
    ({"link_event_horizons_minutes": [0, 5]}, "link_event_horizons_minutes"),
])
def test_link_settings_out_of_range_are_refused(update, name):
    from coinpulse_flows.settings import FlowSettings

    with pytest.raises(ValueError, match=name):
        FlowSettings(**update)
    FlowSettings()  # the defaults pass
