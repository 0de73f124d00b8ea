"""Link statistics benchmark: coinpulse's linkstats (and the full `refresh_marts`) vs brute-force pandas.

    uv run python bench/link_marts.py [--markets 20] [--ref-markets 4] [--seed 15] [--no-db]

Data: one day (1440 minutes, plus 120 minutes of warm-up for the spike baseline) of 1-minute closes and mentions
for N synthetic markets, seeded: some where the mentions lead the returns by a few minutes (drift and volatility),
some where they follow them, one together, independent ones, one without any mention and one with sparse mentions.
Bursts of mentions are planted in a few markets for the event study.

1. coinpulse: `linkstats.market_link` over the arrays of every market at the flow's default settings (31 lags,
   999 block-permutation surrogates, Bonferroni, event study), surrogates drawn in the timing.
2. pandas, brute force, over the first `--ref-markets` markets (one surrogate costs 93 `Series.corr` calls, ~0.3 ms
   each here, so the 20 markets take many minutes; `--ref-markets 20` does them all): for each metric and lag
   `x.corr(y.shift(-k))`; for each of the same surrogates (the same block-permutation indices) and lag the same
   corr; p-values, best lag, Bonferroni, verdict; spikes by the mention_spikes rule with `rolling`; the event study
   with `iloc` windows and scipy's t quantile. Every number is asserted equal to coinpulse's (correlations 1e-9,
   p-values exact); the ratio compares the time of both on the same markets.
3. unless --no-db: the same data written to gold-like tables in a scratch schema of the stack the environment
   points at (COINPULSE_* ports, e.g. an isolated stack), `refresh_marts` timed twice (the second is the steady
   state), the three link tables read back and asserted equal to the arrays' results. Goal: < 5 s.

The report block is printed and appended to bench/results/link_marts.txt.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from coinpulse_flows import linkstats as ls
from scipy import stats
from scipy.signal import lfilter

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "link_marts.txt"
DAY, WARM = 1440, 120
N = DAY + WARM
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
SPIKE_BASE, SPIKE_Z, SPIKE_MIN = 60, 3.0, 25  # the flow's spike rule (baseline, z) with a higher floor of mentions


# --- synthetic data ---------------------------------------------------------------------------------------------

def _ar1(rng, phi, sd):
    return lfilter([1.0], [1.0, -phi], rng.normal(0.0, sd, N))


def _std(a):
    return (a - a.mean()) / a.std()


def _shift(a, k):
    out = np.zeros_like(a)
    out[k:] = a[: len(a) - k] if k else a
    return out


def market_kinds(n: int) -> list[tuple[str, str, int]]:
    """(market, kind, lag) for n markets: leads, follows, together, none, quiet, sparse."""
    kinds = [("lead", 1), ("lead", 3), ("lead", 5), ("lead_vol", 2), ("lead_vol", 8), ("follow", 1), ("follow", 2),
             ("follow", 4), ("together", 0), ("quiet", 0), ("sparse", 0)]
    kinds += [("none", 0)] * max(0, n - len(kinds))
    return [(f"KRW-S{i:02d}", k, lag) for i, (k, lag) in enumerate(kinds[:n])]


def generate(n_markets: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per market: close (N), mentions (N), sentiment (N, NaN without mentions)."""
    out = {}
    for i, (market, kind, lag) in enumerate(market_kinds(n_markets)):
        rng = np.random.default_rng([seed, i])
        noise = 1e-3 * np.exp(_ar1(rng, 0.97, 0.1)) * _ar1(rng, 0.2, 1.0)
        z = _ar1(rng, 0.9, 0.3)
        level = rng.uniform(-0.5, 1.5)  # busy and quiet communities
        r = noise
        if kind == "follow":
            m = rng.poisson(np.exp(level + z + 0.6 * _shift(_std(noise), lag)))
        else:
            m = rng.poisson(np.exp((-3.0 if kind == "sparse" else level) + z))
        m = m.astype(float) * (kind != "quiet")
        if i % 3 == 0 and kind not in ("quiet", "sparse"):  # planted bursts
            m[rng.choice(np.arange(WARM + 5, N - 40, 70), size=8, replace=False)] = 60
        if kind == "lead":
            r = noise + 4e-4 * _shift(np.clip(_std(m), None, 4), lag)
        elif kind == "lead_vol":
            r = noise * np.exp(0.4 * _shift(np.clip(_std(m), None, 4), lag))
        elif kind == "together":
            r = noise + 4e-4 * np.clip(_std(m), None, 4)
        sent = np.where(m > 0, np.tanh(rng.normal(0, 1, N) + (0.5 * _std(m) if kind == "together" else 0)), np.nan)
        out[market] = {"close": 1000.0 * np.exp(np.cumsum(r)), "mentions": m, "sentiment": sent, "kind": kind}
    return out


def spikes_pandas(mentions: np.ndarray) -> np.ndarray:
    """The mention_spikes rule: z over the previous 60 minutes (std floored at 1) >= 3 with >= SPIKE_MIN mentions."""
    m = pd.Series(mentions)
    prev = m.shift(1).rolling(SPIKE_BASE, min_periods=SPIKE_BASE)
    z = (m - prev.mean()) / prev.std().fillna(0).clip(lower=1.0)
    return ((m >= SPIKE_MIN) & (z >= SPIKE_Z) & prev.count().ge(SPIKE_BASE)).to_numpy()


def arrays(d: dict) -> dict[str, np.ndarray]:
    """The look-back's dense series as the marts' grid has them (return of the first minute from the warm-up)."""
    close = d["close"]
    ret = np.log(close[1:] / close[:-1])
    spikes = spikes_pandas(d["mentions"])
    return {"ret": ret[WARM - 1:], "mentions": d["mentions"][WARM:], "sentiment": d["sentiment"][WARM:],
            "spikes": spikes[WARM:]}


# --- brute-force pandas ---------------------------------------------------------------------------------------

def pandas_market(a: dict[str, np.ndarray], cfg: ls.LinkConfig, perms: np.ndarray) -> dict:
    lags = list(range(-cfg.max_lag, cfg.max_lag + 1))
    ser = {"mentions": pd.Series(a["mentions"]), "sentiment": pd.Series(a["sentiment"]),
           "ret": pd.Series(a["ret"]), "absret": pd.Series(a["ret"]).abs()}
    out: dict = {"lead_lag": {}, "summary": {}}
    for metric, (xn, yn) in ls.METRICS.items():
        x, y = ser[xn], ser[yn]
        ys = {k: y.shift(-k) for k in lags}
        corr = {k: x.corr(ys[k]) for k in lags}
        pairs = {k: int((x.notna() & ys[k].notna()).sum()) for k in lags}
        enough = pairs[0] >= cfg.min_points and any(not math.isnan(c) for c in corr.values())
        p = {k: None for k in lags}
        if enough:
            exceed = {k: 0 for k in lags}
            finite = {k: 0 for k in lags}
            for idx in perms:
                xs = pd.Series(x.to_numpy()[idx])
                for k in lags:
                    c = xs.corr(ys[k])
                    if not math.isnan(c):
                        finite[k] += 1
                        exceed[k] += abs(c) >= abs(corr[k]) * (1 - 1e-12)
            p = {k: None if math.isnan(corr[k]) else (1 + exceed[k]) / (1 + finite[k]) for k in lags}
        tested = [k for k in lags if not math.isnan(corr[k])]
        rows = [(k, None if math.isnan(corr[k]) else corr[k], pairs[k], p[k],
                 bool(enough and p[k] is not None and p[k] < cfg.alpha / len(tested))) for k in lags]
        if not enough:
            summ = (None, None, None, None, "insufficient_data", pairs[0])
        else:
            best = sorted(tested, key=lambda k: (-abs(corr[k]), abs(k), k))[0]
            p_adj = min(1.0, p[best] * len(tested))
            verdict = "no_link" if p_adj >= cfg.alpha else (
                "community_leads" if best > 0 else "community_follows" if best < 0 else "together")
            summ = (best, corr[best], p[best], p_adj, verdict, pairs[best])
        out["lead_lag"][metric], out["summary"][metric] = rows, summ
    r, s = ser["ret"], pd.Series(a["spikes"])
    starts = s[s & ~s.shift(1, fill_value=False)].index
    events = []
    for h in cfg.horizons:
        cums, absm = [], []
        for t in starts:
            w = r.iloc[t + 1:t + h + 1]
            if t + h < len(r) and w.notna().all():
                cums.append(w.sum())
                absm.append(w.abs().mean())

        def ci(v):
            if not v:
                return None, None, None
            m = float(np.mean(v))
            if len(v) < 2:
                return m, None, None
            half = stats.t.ppf(0.975, len(v) - 1) * pd.Series(v).std() / math.sqrt(len(v))
            return m, m - half, m + half

        events.append((h, len(cums), *ci(cums), *ci(absm)))
    out["events"] = events
    return out


def coinpulse_tuples(res: ls.MarketLink) -> dict:
    return {"lead_lag": {m: [(x.lag, x.corr, x.n, x.p_value, x.significant) for x in rows]
                         for m, rows in res.lead_lag.items()},
            "summary": {m: (v.best_lag, v.best_corr, v.p_value, v.p_adjusted, v.verdict, v.n)
                        for m, v in res.summary.items()},
            "events": [(e.horizon, e.n_events, e.mean_ret, e.ret_ci_low, e.ret_ci_high, e.mean_absret,
                        e.absret_ci_low, e.absret_ci_high) for e in res.events]}


def close_enough(a, b, where: str, tol: float = 1e-9) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            close_enough(a[k], b[k], f"{where}/{k}", tol)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close_enough(x, y, f"{where}[{i}]", tol)
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# --- the database --------------------------------------------------------------------------------------------

def run_db(data: dict, cfg: ls.LinkConfig, expected: dict) -> dict:
    import psycopg
    from coinpulse_flows import marts
    from coinpulse_flows.settings import FlowSettings

    schema = f"zz_bench_link_{uuid.uuid4().hex[:8]}"
    s = FlowSettings(candles_table=f"{schema}.candles", mentions_table=f"{schema}.mentions_1m",
                     marts_schema=f"{schema}_marts", spike_min_mentions=SPIKE_MIN)
    assert (s.spike_baseline_minutes, s.spike_z) == (SPIKE_BASE, SPIKE_Z)
    rng = np.random.default_rng(0)
    try:
        with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
            c.execute(f"""CREATE TABLE {schema}.candles (market text, interval text, bucket_start timestamptz,
                open float8, high float8, low float8, close float8, volume float8, quote_volume float8, vwap float8,
                trade_count bigint, PRIMARY KEY (market, interval, bucket_start))""")
            c.execute(f"""CREATE TABLE {schema}.mentions_1m (market text, bucket_start timestamptz, mentions bigint,
                posts bigint, comments bigint, sentiment float8, PRIMARY KEY (market, bucket_start))""")
            with c.cursor().copy(f"COPY {schema}.candles FROM STDIN") as cp:
                for m, d in data.items():
                    for t in range(N):
                        x = float(d["close"][t])
                        v = float(rng.uniform(0.5, 2))
                        cp.write_row((m, "1m", T0 + timedelta(minutes=t), x, x, x, x, v, v * x, x, 3))
            with c.cursor().copy(f"COPY {schema}.mentions_1m FROM STDIN") as cp:
                for m, d in data.items():
                    for t in np.flatnonzero(d["mentions"] > 0):
                        cp.write_row((m, T0 + timedelta(minutes=int(t)), int(d["mentions"][t]), int(d["mentions"][t]),
                                      0, float(d["sentiment"][t])))
            c.execute(f"ANALYZE {schema}.candles; ANALYZE {schema}.mentions_1m")
        as_of = T0 + timedelta(minutes=N)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            r = marts.refresh_marts(s, as_of, publish=False)
            times.append(time.perf_counter() - t0)
        with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
            q = f"SELECT * FROM {s.marts_schema}.%s ORDER BY 1, 2"
            ll = c.execute(q % "lead_lag" + ", 3").fetchall()
            ls_rows = c.execute(q % "link_summary").fetchall()
            ev = c.execute(q % "event_study").fetchall()
        got: dict = {m: {"lead_lag": {}, "summary": {}, "events": []} for m in data}
        for market, metric, lag, corr, n, p, sig, _ in ll:
            got[market]["lead_lag"].setdefault(metric, []).append((lag, corr, n, p, sig))
        for market, metric, best, corr, p, p_adj, verdict, n, *_ in ls_rows:
            got[market]["summary"][metric] = (best, corr, p, p_adj, verdict, n)
        for market, h, n_ev, *vals, _ in ev:
            got[market]["events"].append((h, n_ev, *vals))
        for m in data:
            close_enough(got[m], expected[m], f"db {m}")
        return {"times": times, "rows": (r.lead_lag, r.link_summary, r.event_study)}
    finally:
        with psycopg.connect(s.pg_dsn(), autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            c.execute(f"DROP SCHEMA IF EXISTS {schema}_marts CASCADE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markets", type=int, default=20)
    ap.add_argument("--ref-markets", type=int, default=4, help="markets the pandas reference recomputes")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--no-db", action="store_true", help="skip the refresh_marts measurement")
    a = ap.parse_args()
    cfg = ls.LinkConfig()  # the flow settings' defaults
    data = generate(a.markets, a.seed)
    arr = {m: arrays(d) for m, d in data.items()}

    ls.block_permutations.cache_clear()
    t0 = time.perf_counter()
    res = {m: ls.market_link(v["ret"], v["mentions"], v["sentiment"], v["spikes"], cfg) for m, v in arr.items()}
    cp_all = time.perf_counter() - t0
    ref_markets = list(arr)[: a.ref_markets]
    ls.block_permutations.cache_clear()
    t0 = time.perf_counter()
    for m in ref_markets:
        v = arr[m]
        ls.market_link(v["ret"], v["mentions"], v["sentiment"], v["spikes"], cfg)
    cp_ref = time.perf_counter() - t0
    perms = ls.block_permutations(DAY, cfg.block, cfg.permutations, cfg.seed)
    t0 = time.perf_counter()
    ref = {m: pandas_market(arr[m], cfg, perms) for m in ref_markets}
    pd_ref = time.perf_counter() - t0
    expected = {m: coinpulse_tuples(r) for m, r in res.items()}
    for m in ref_markets:
        close_enough(expected[m], ref[m], f"pandas {m}")
    db = None if a.no_db else run_db(data, cfg, expected)

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "flows", "bench/link_marts.py"],
                           capture_output=True, text=True).stdout.split("\n")
    dirty = [x[3:] for x in dirty if x.strip()]
    load = os.getloadavg()
    verdicts: dict[str, int] = {}
    for r in res.values():
        for s in r.summary.values():
            verdicts[s.verdict] = verdicts.get(s.verdict, 0) + 1
    kinds = {m: d["kind"] for m, d in data.items()}
    metric_of = {"lead_vol": "mentions_absret"}  # a volatility lead shows in |return|
    found = [f"{m}({kinds[m]}{lag}): {metric_of.get(kinds[m], 'mentions_ret')} "
             f"{res[m].summary[metric_of.get(kinds[m], 'mentions_ret')].best_lag}/"
             f"{res[m].summary[metric_of.get(kinds[m], 'mentions_ret')].verdict}"
             for m, kind, lag in market_kinds(a.markets) if kind != "none"]
    rep = [f"=== link_marts {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}  commit {head}"
           f"{' + uncommitted changes in ' + ', '.join(dirty) if dirty else ''}",
           f"command: uv run python bench/link_marts.py --markets {a.markets} --ref-markets {a.ref_markets} "
           f"--seed {a.seed}{' --no-db' if a.no_db else ''}",
           f"{a.markets} markets x {DAY} minutes; {2 * cfg.max_lag + 1} lags x 3 metrics, {cfg.permutations} "
           f"surrogates (blocks of {cfg.block} min), horizons {list(cfg.horizons)}; load average "
           f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} on {os.cpu_count()} cores (shared); OPENBLAS_NUM_THREADS="
           f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
           f"verdicts: {verdicts}",
           "planted markets, best lag/verdict: " + "; ".join(found),
           f"coinpulse linkstats, {a.markets} markets: {cp_all:.2f} s",
           f"same numbers, {len(ref_markets)} markets: coinpulse {cp_ref:.2f} s, pandas brute force {pd_ref:.1f} s, "
           f"ratio pandas/coinpulse {pd_ref / cp_ref:.0f}x; results equal (corr 1e-9, p exact, verdicts, events)"]
    if db:
        rep.append(f"refresh_marts (all marts, {a.markets} markets, one day): {db['times'][0]:.2f} s first, "
                   f"{db['times'][1]:.2f} s again; link rows {db['rows']}; tables equal to the arrays' results")
    goal = db["times"][1] if db else cp_all
    rep.append(f"goal link marts refresh < 5 s for a day x 20 markets: {'MET' if goal < 5 else 'NOT MET'} "
               f"({goal:.2f} s, {'refresh_marts' if db else 'linkstats only'})")
    text = "\n".join(rep)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(text + "\n\n")


if __name__ == "__main__":
    main()
