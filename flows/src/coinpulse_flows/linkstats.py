"""The price–community link, tested: lead–lag cross-correlation with block-permutation p-values, and an event study.

Pure functions over numpy arrays of one market's dense minute grid (no database; `marts.py` reads the series and
writes the results). Missing values are NaN: the return before the first candle, the sentiment of a minute without
mentions. Every correlation uses the pairs where both sides are finite (as pandas' `Series.corr` does).

Lag convention (the marts contract): lag k > 0 pairs the community at minute t with the market at t + k, i.e. the
community LEADS by k minutes; k < 0, the community follows by |k|; `corr_k = corr(x[t], y[t + k])`, which is
pandas' `x.corr(y.shift(-k))`.

Significance. Minute series are autocorrelated (mention bursts, volatility clusters), so a plain permutation of the
minutes, or the textbook `r·sqrt(n-2)/sqrt(1-r²)` t-test, would call noise a link far more often than alpha. The
null distribution comes instead from a circular block permutation of the community series: rotate it by a random
offset, cut it into blocks of `block` minutes and shuffle the blocks. That keeps the series' values and its
autocorrelation within a block and breaks its alignment with the market; the market series is left as it is. The
same surrogates are used at every lag, and the p-value of lag k is two-sided,
`(1 + #{|r*_k| >= |r_k|}) / (1 + #surrogates)`. The surrogates come from a seeded generator, so a refresh over the
same data gives the same p-values. The best lag is the one of largest |corr|; its p-value times the number of lags
tested (Bonferroni, capped at 1) is `p_adjusted`; the verdict is the best lag's sign when `p_adjusted < alpha`
(leads / follows / together), else `no_link`; too few pairs, or a constant series, is `insufficient_data`.
A lag is `significant` when its own p-value is below alpha / lags tested.

Event study: the minutes after each mention spike (first minute of a run of spike minutes, so a burst counts once):
the cumulative log return and the mean |1-minute return| over the next h minutes, their mean over the events and a
95 % Student-t confidence interval (undefined, None, below two events).

Output is NaN-free: an undefined number is None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import stats

METRICS: dict[str, tuple[str, str]] = {  # metric -> (community series, market series)
    "mentions_ret": ("mentions", "ret"),
    "mentions_absret": ("mentions", "absret"),
    "sentiment_ret": ("sentiment", "ret"),
}
VERDICTS = ("community_leads", "community_follows", "together", "no_link", "insufficient_data")
EVENT_LEVEL = 0.95
_CHUNK = 256  # surrogates per matrix product (bounds memory for long look-backs)
_TIE = 1e-12  # a surrogate within this relative distance of the observed |corr| counts as at least as large


@dataclass(frozen=True)
class LinkConfig:
    max_lag: int = 15
    alpha: float = 0.05
    permutations: int = 999
    block: int = 30
    min_points: int = 120
    horizons: tuple[int, ...] = (1, 5, 15, 30)
    seed: int = 0

    @property
    def lags(self) -> np.ndarray:
        return np.arange(-self.max_lag, self.max_lag + 1)


@dataclass(frozen=True)
class LagRow:
    lag: int
    corr: float | None
    n: int
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class Summary:
    best_lag: int | None
    best_corr: float | None
    p_value: float | None
    p_adjusted: float | None
    verdict: str
    n: int


@dataclass(frozen=True)
class EventRow:
    horizon: int
    n_events: int
    mean_ret: float | None
    ret_ci_low: float | None
    ret_ci_high: float | None
    mean_absret: float | None
    absret_ci_low: float | None
    absret_ci_high: float | None


@dataclass
class MarketLink:
    lead_lag: dict[str, list[LagRow]] = field(default_factory=dict)
    summary: dict[str, Summary] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _pairs(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    return (x[: n - k], y[k:]) if k >= 0 else (x[-k:], y[: n + k])


def lagged_corr(x: np.ndarray, y: np.ndarray, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson corr(x[t], y[t + k]) over the finite pairs, and the number of pairs, per lag (NaN if undefined)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d arrays of one length, got {x.shape} and {y.shape}")
    r, n = np.full(len(lags), np.nan), np.zeros(len(lags), np.int64)
    for j, k in enumerate(lags):
        if abs(k) >= len(x):
            continue
        a, b = _pairs(x, y, int(k))
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        n[j] = len(a)
        if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:  # a constant side has no correlation
            continue
        da, db = a - a.mean(), b - b.mean()
        den = math.sqrt((da @ da) * (db @ db))
        if not den > 0:  # spreads so small that their squares underflow: no correlation to measure
            continue
        r[j] = np.clip(da @ db / den, -1.0, 1.0)
    return r, n


@lru_cache(maxsize=8)
def block_permutations(n: int, block: int, count: int, seed: int) -> np.ndarray:
    """`count` circular block permutations of range(n), shape (count, n), read-only: surrogate i is x[out[i]].

    Each rotates the series by a random offset, cuts it into blocks of `block` (the last one shorter when n is not a
    multiple) and puts the blocks in a random order."""
    if n < 1 or block < 1 or count < 1:
        raise ValueError(f"block_permutations needs n, block, count >= 1, got {n}, {block}, {count}")
    rng = np.random.default_rng(seed)
    nb = -(-n // block)
    rank = np.argsort(rng.random((count, nb)), axis=1)  # a random order of the blocks, per surrogate
    pos = np.arange(n)
    order = np.argsort(rank[:, pos // block] * n + pos, axis=1, kind="stable")
    out = (order + rng.integers(0, n, size=(count, 1))) % n
    out.flags.writeable = False
    return out


def _shifted(y: np.ndarray, max_lag: int) -> np.ndarray:
    """(n, 2K+1): column j holds y[t + j - K] (0 outside the series)."""
    yp = np.concatenate([np.zeros(max_lag), y, np.zeros(max_lag)])
    return np.lib.stride_tricks.sliding_window_view(yp, 2 * max_lag + 1)[: len(y)]


def null_corr(x: np.ndarray, ys: list[np.ndarray], max_lag: int, perms: np.ndarray) -> list[np.ndarray]:
    """Cross-correlations of every surrogate x[perm] with each y at lags -K..K: per y an array (surrogates, 2K+1).

    The pairwise-complete sums of every surrogate and lag (pairs, Σx, Σx², Σy, Σy², Σxy) are products of the
    surrogates' values, squares and masks with the shifted masks, values and squares of y, per chunk of surrogates.
    Only the products that vary are matrix products: a complete x makes the y-side sums constant, a complete y makes
    the x-side sums differences of prefix sums (the pairs of lag k are minutes max(0,-k) .. min(n,n-k)-1), series
    sharing a mask share its products. The series are centred first, which keeps the one-pass variance accurate."""
    x = np.asarray(x, float)
    x = x - np.nanmean(x)
    n, n_lags = len(x), 2 * max_lag + 1
    x_full = bool(np.isfinite(x).all())
    lag = np.arange(-max_lag, max_lag + 1)
    lo_t, hi_t = np.maximum(0, -lag), np.minimum(n, n - lag)  # the minutes t paired at each lag
    mask_keys: list[bytes] = []  # distinct masks of the ys
    partial: list[np.ndarray] = []  # shifted masks of the incomplete ones
    mask_of, vals, sqs = [], [], []
    for y in ys:
        y = np.asarray(y, float)
        my = np.isfinite(y)
        key = my.tobytes()
        if key not in mask_keys:
            mask_keys.append(key)
            partial.append(None if my.all() else _shifted(my.astype(float), max_lag))
        mask_of.append(mask_keys.index(key))
        yc = np.where(my, y - y[my].mean(), 0.0)
        vals.append(_shifted(yc, max_lag))
        sqs.append(_shifted(yc * yc, max_lag))
    cols = [m for m in partial if m is not None]
    pos = {u: i for i, u in enumerate(u for u, m in enumerate(partial) if m is not None)}  # mask -> column block
    npart, ny = len(cols), len(ys)
    r_x = np.concatenate(cols + vals, axis=1)  # against x: Σx per incomplete mask, Σxy per y
    r_xx = np.concatenate(cols, axis=1) if cols else None  # against x²: Σx² per incomplete mask
    r_m = np.concatenate(cols + vals + sqs, axis=1)  # against the mask of x: pairs, Σy, Σy²
    const = r_m.sum(axis=0)  # the same sums when x has no gap
    full_pairs = (hi_t - lo_t).astype(float)
    out = [np.empty((len(perms), n_lags)) for _ in ys]

    def col(a: np.ndarray, i: int) -> np.ndarray:
        return a[..., i * n_lags:(i + 1) * n_lags]

    def ranged(a: np.ndarray) -> np.ndarray:  # Σ over the paired minutes of each lag: all but ≤ K at either end
        zero = np.zeros((len(a), 1))
        head = np.concatenate([zero, np.cumsum(a[:, :max_lag], axis=1)], axis=1)
        tail = np.concatenate([zero, np.cumsum(a[:, :n - max_lag - 1:-1], axis=1)], axis=1)
        return a.sum(axis=1, keepdims=True) - head[:, lo_t] - tail[:, n - hi_t]

    for lo in range(0, len(perms), _CHUNK):
        xs = x[perms[lo:lo + _CHUNK]]
        b = len(xs)
        mx = np.isfinite(xs)
        xv = np.where(mx, xs, 0.0)
        x2 = xv * xv
        p_x = xv @ r_x
        p_xx = x2 @ r_xx if r_xx is not None else None
        p_m = np.broadcast_to(const, (b, len(const))) if x_full else mx.astype(float) @ r_m
        full_sums = None
        for i in range(ny):
            u = mask_of[i]
            if partial[u] is None:  # y complete: x-side sums over each lag's range of minutes
                if full_sums is None:
                    full_sums = (np.broadcast_to(full_pairs, (b, n_lags)) if x_full else ranged(mx.astype(float)),
                                 ranged(xv), ranged(x2))
                cnt, sx, sxx = full_sums
            else:
                j = pos[u]
                cnt, sx, sxx = col(p_m, j), col(p_x, j), col(p_xx, j)
            sy, syy, sxy = col(p_m, npart + i), col(p_m, npart + ny + i), col(p_x, npart + i)
            with np.errstate(divide="ignore", invalid="ignore"):
                vx = sxx - sx * sx / cnt
                vy = syy - sy * sy / cnt
                r = (sxy - sx * sy / cnt) / np.sqrt(vx * vy)
            # a constant side (variance lost in rounding) has no correlation
            bad = (cnt < 2) | ~(vx > 1e-12 * sxx) | ~(vy > 1e-12 * syy)
            out[i][lo:lo + b] = np.where(bad, np.nan, np.clip(r, -1.0, 1.0))
    return out


def perm_pvalues(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Two-sided p per lag: (1 + surrogates at least as extreme) / (1 + finite surrogates); NaN if undefined."""
    a = np.abs(null)
    fin = np.isfinite(a)
    ge = fin & (a >= np.abs(observed) * (1 - _TIE))
    with np.errstate(invalid="ignore"):
        p = (1 + ge.sum(axis=0)) / (1 + fin.sum(axis=0))
    return np.where(np.isfinite(observed), p, np.nan)


def summarize(lags: np.ndarray, corr: np.ndarray, n: np.ndarray, p: np.ndarray, alpha: float,
              min_points: int) -> Summary:
    """Best lag (largest |corr|; a tie goes to the smaller |lag|), its p, Bonferroni over the lags tested, verdict."""
    tested = np.isfinite(corr)
    n0 = int(n[lags == 0][0]) if (lags == 0).any() else int(n.max(initial=0))
    if not tested.any() or n0 < min_points or not np.isfinite(p[tested]).all():
        return Summary(None, None, None, None, "insufficient_data", n0)
    order = sorted(np.flatnonzero(tested), key=lambda j: (-abs(corr[j]), abs(lags[j]), lags[j]))
    j = order[0]
    k, pj = int(lags[j]), float(p[j])
    p_adj = min(1.0, pj * int(tested.sum()))
    verdict = "no_link" if p_adj >= alpha else (
        "community_leads" if k > 0 else "community_follows" if k < 0 else "together")
    return Summary(k, _num(corr[j]), pj, p_adj, verdict, int(n[j]))


def lead_lag_group(x: np.ndarray, ys: dict[str, np.ndarray], cfg: LinkConfig,
                   perms: np.ndarray | None = None) -> dict[str, tuple[list[LagRow], Summary]]:
    """One community series against several market series: per name, the rows per lag and the summary."""
    lags = cfg.lags
    x = np.asarray(x, float)
    if perms is None:
        perms = block_permutations(len(x), cfg.block, cfg.permutations, cfg.seed)
    obs = {name: lagged_corr(x, y, lags) for name, y in ys.items()}
    # the surrogates only for the series with enough data (an insufficient pair is not tested)
    todo = [name for name, (r, n) in obs.items()
            if np.isfinite(r).any() and int(n[lags == 0][0]) >= cfg.min_points]
    nulls = dict(zip(todo, null_corr(x, [ys[t] for t in todo], cfg.max_lag, perms), strict=True)) if todo else {}
    out = {}
    for name, (r, n) in obs.items():
        p = perm_pvalues(r, nulls[name]) if name in nulls else np.full(len(lags), np.nan)
        tested = int(np.isfinite(r).sum()) if name in nulls else 0
        rows = [LagRow(int(k), _num(r[j]), int(n[j]), _num(p[j]),
                       bool(tested and np.isfinite(p[j]) and p[j] < cfg.alpha / tested))
                for j, k in enumerate(lags)]
        out[name] = (rows, summarize(lags, r, n, p, cfg.alpha, cfg.min_points))
    return out


def t_interval(v: np.ndarray, level: float = EVENT_LEVEL) -> tuple[float | None, float | None, float | None]:
    """Mean and Student-t confidence interval of the mean (None where undefined: no value, or one)."""
    v = np.asarray(v, float)
    if len(v) == 0:
        return None, None, None
    m = float(v.mean())
    if len(v) < 2:
        return _num(m), None, None
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return _num(m), _num(m - half), _num(m + half)


def spike_events(spikes: np.ndarray) -> np.ndarray:
    """Indices of event minutes: a spike minute whose previous minute is not one (a burst is one event)."""
    s = np.asarray(spikes, bool)
    return np.flatnonzero(s & ~np.concatenate([[False], s[:-1]]))


def event_study(ret: np.ndarray, spikes: np.ndarray, horizons: tuple[int, ...],
                level: float = EVENT_LEVEL) -> list[EventRow]:
    """Per horizon h: over the events whose h next minutes all have a return, the mean cumulative log return and
    mean |1-minute return| of minutes t+1..t+h, each with its confidence interval."""
    ret = np.asarray(ret, float)
    starts = spike_events(spikes)
    fin = np.isfinite(ret)
    c_ret = np.concatenate([[0.0], np.cumsum(np.where(fin, ret, 0.0))])
    c_abs = np.concatenate([[0.0], np.cumsum(np.where(fin, np.abs(ret), 0.0))])
    c_bad = np.concatenate([[0], np.cumsum(~fin)])
    out = []
    for h in horizons:
        t0 = starts[starts + h < len(ret)]
        a, b = t0 + 1, t0 + h + 1  # minutes t0+1 .. t0+h
        t0 = t0[c_bad[b] - c_bad[a] == 0]
        a, b = t0 + 1, t0 + h + 1
        cum, absm = c_ret[b] - c_ret[a], (c_abs[b] - c_abs[a]) / h
        out.append(EventRow(int(h), len(t0), *t_interval(cum, level), *t_interval(absm, level)))
    return out


def market_link(ret: np.ndarray, mentions: np.ndarray, sentiment: np.ndarray, spikes: np.ndarray,
                cfg: LinkConfig) -> MarketLink:
    """Every link statistic of one market over its dense minute grid (arrays of one length, NaN = missing)."""
    ret = np.asarray(ret, float)
    n = len(ret)
    for name, a in (("mentions", mentions), ("sentiment", sentiment), ("spikes", spikes)):
        if len(a) != n:
            raise ValueError(f"{name} has {len(a)} minutes, ret has {n}: the series must share one grid")
    perms = block_permutations(n, cfg.block, cfg.permutations, cfg.seed) if n else None
    out = MarketLink()
    series = {"mentions": np.asarray(mentions, float), "sentiment": np.asarray(sentiment, float),
              "ret": ret, "absret": np.abs(ret)}
    groups: dict[str, list[str]] = {}
    for metric, (x, _) in METRICS.items():
        groups.setdefault(x, []).append(metric)
    for x, metrics in groups.items():
        if n == 0:
            res = {m: ([LagRow(int(k), None, 0, None, False) for k in cfg.lags],
                       Summary(None, None, None, None, "insufficient_data", 0)) for m in metrics}
        else:
            res = lead_lag_group(series[x], {m: series[METRICS[m][1]] for m in metrics}, cfg, perms)
        for m in metrics:
            out.lead_lag[m], out.summary[m] = res[m]
    out.events = event_study(ret, np.asarray(spikes, bool), cfg.horizons)
    return out
