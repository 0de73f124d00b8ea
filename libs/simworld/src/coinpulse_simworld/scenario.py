"""Scenario files: the seed, the markets and how each market is coupled to the community (TOML).

    name = "default"
    seed = 20261202
    [community]                  # optional: how documents are drawn (defaults below)
    noise_per_minute = 2.0       #   documents per minute that mention no coin
    post_share = 0.35            #   share of documents that are posts (the rest are comments)
    polar_share = 0.85           #   share of coin documents that carry one lexicon word (the rest are neutral)
    sentiment_strength = 0.8     #   sentiment of the extra documents of a burst or of a follow response
    [defaults]                   # optional: any market key, for every market of the file
    sigma = 0.0012
    [markets.KRW-BTC]            # one table per market, in the order the world lists them
    mentions = 1.5
    coupling = { kind = "community_follows", lag = 3, k = 3.0, factor = 4.0, minutes = 5 }
    [markets.KRW-ADA]            # an empty table: the built-in defaults, no coupling (a control)

Market keys (built-in values for the 15 default markets in `BUILTIN`; the rest from `[defaults]` or `MARKET_DEFAULTS`):
`price` (KRW, the level the price hovers around), `sigma` (std of the 1-minute log return), `level_sd` (std of the
daily level around `price`, in log units), `shock_rate` / `shock_size` (probability per minute of a jump and its
size range in sigma), `burst_rate` / `burst_factor` / `burst_minutes` (probability per minute of a burst of mentions,
the factor on mentions in its first minute, decaying linearly to 1 over `burst_minutes`; its sentiment sign is
random), `mentions` (expected coin documents per minute at rest), `sentiment_bias` (sentiment at rest, -1..1),
`trades_per_second`, `aliases` (words the documents name the coin by), `korean_name`, `english_name`.

Couplings (`coupling = "none"` or an inline table with `kind`):
- `community_follows`: after a 1-minute move |r| > k·sigma, mentions rise by `factor` (first minute) `lag` minutes
  later, decaying linearly back to 1 over `minutes` minutes; the sentiment of the extra documents is the sign of r.
- `community_leads`: every burst of mentions (sign s) is followed `lag` minutes later by a 1-minute price move of
  `move`·sigma in direction s.
- `none`: a control, market and community independent (it still has shocks and bursts, unrelated).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, overload

COUPLINGS = ("community_follows", "community_leads", "none")
DEFAULT_EPOCH = "2020-01-01T00:00:00+00:00"  # origin of the numbering of posts and comments

# code: korean name, english name, price (KRW), trades per second, aliases (as the candle agent's dictionary has them)
BUILTIN: dict[str, tuple[str, str, float, float, tuple[str, ...]]] = {
    "KRW-BTC": ("비트코인", "Bitcoin", 140_000_000, 4.0, ("비트코인", "비트", "빗코", "BTC")),
    "KRW-ETH": ("이더리움", "Ethereum", 5_200_000, 3.0, ("이더리움", "이더", "ETH")),
    "KRW-XRP": ("리플", "XRP", 3_400, 3.0, ("리플", "엑스알피", "XRP")),
    "KRW-SOL": ("솔라나", "Solana", 240_000, 1.5, ("솔라나", "SOL")),
    "KRW-DOGE": ("도지코인", "Dogecoin", 330, 1.5, ("도지코인", "도지", "DOGE")),
    "KRW-ADA": ("에이다", "Cardano", 1_050, 1.0, ("에이다", "카르다노", "ADA")),
    "KRW-SUI": ("수이", "Sui", 5_300, 1.0, ("수이", "SUI")),
    "KRW-TRX": ("트론", "TRON", 380, 0.6, ("트론", "TRX")),
    "KRW-LINK": ("체인링크", "Chainlink", 22_000, 0.6, ("체인링크", "LINK")),
    "KRW-AVAX": ("아발란체", "Avalanche", 31_000, 0.5, ("아발란체", "AVAX")),
    "KRW-HBAR": ("헤데라", "Hedera", 270, 0.5, ("헤데라", "HBAR")),
    "KRW-ETC": ("이더리움클래식", "Ethereum Classic", 26_000, 0.4, ("이더리움클래식", "이클", "ETC")),
    "KRW-BCH": ("비트코인캐시", "Bitcoin Cash", 560_000, 0.3, ("비트코인캐시", "BCH")),
    "KRW-DOT": ("폴카닷", "Polkadot", 5_800, 0.3, ("폴카닷", "DOT")),
    "KRW-OM": ("만트라", "MANTRA", 560, 0.3, ("만트라", "OM")),
}

MARKET_DEFAULTS: dict[str, Any] = {
    "sigma": 0.0012, "level_sd": 0.03, "shock_rate": 0.01, "shock_size": [4.0, 7.0], "burst_rate": 0.01,
    "burst_factor": 4.0, "burst_minutes": 5, "mentions": 0.3, "sentiment_bias": 0.0, "trades_per_second": 0.5,
}
COMMUNITY_DEFAULTS: dict[str, float] = {
    "noise_per_minute": 2.0, "post_share": 0.35, "polar_share": 0.85, "sentiment_strength": 0.8,
}
COUPLING_KEYS = {"kind", "lag", "k", "factor", "minutes", "move"}
MARKET_KEYS = set(MARKET_DEFAULTS) | {"price", "aliases", "korean_name", "english_name", "coupling"}
TOP_KEYS = {"name", "seed", "epoch", "community", "defaults", "markets"}


class ScenarioError(ValueError):
    """A scenario file that cannot be used: the message names the file, the key and what is wrong."""


@dataclass(frozen=True)
class Coupling:
    kind: str = "none"
    lag: int = 0  # minutes
    k: float = 3.0  # follows: trigger when |1-minute log return| > k * sigma
    factor: float = 4.0  # follows: mentions x factor in the first minute of the response
    minutes: int = 5  # follows: length of the response (linear decay back to x1)
    move: float = 5.0  # leads: the price move `lag` minutes after a burst, in sigma


@dataclass(frozen=True)
class MarketSpec:
    code: str
    korean_name: str
    english_name: str
    price: float
    sigma: float
    level_sd: float
    shock_rate: float
    shock_size: tuple[float, float]
    burst_rate: float
    burst_factor: float
    burst_minutes: int
    mentions: float
    sentiment_bias: float
    trades_per_second: float
    aliases: tuple[str, ...]
    coupling: Coupling = field(default_factory=Coupling)


@dataclass(frozen=True)
class CommunitySpec:
    noise_per_minute: float = 2.0
    post_share: float = 0.35
    polar_share: float = 0.85
    sentiment_strength: float = 0.8


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    epoch_ms: int
    community: CommunitySpec
    markets: dict[str, MarketSpec]
    source: str = ""

    @property
    def codes(self) -> list[str]:
        return list(self.markets)

    def subset(self, codes: list[str] | None) -> Scenario:
        """The same world restricted to these markets (each market's world does not depend on the others)."""
        if not codes:
            return self
        unknown = [c for c in codes if c not in self.markets]
        if unknown:
            raise ScenarioError(f"{self.source}: markets not in the scenario: {', '.join(unknown)}")
        return replace(self, markets={c: self.markets[c] for c in codes})


@overload
def _num(where: str, key: str, v: Any, lo: float | None = ..., hi: float | None = ..., *,
         integer: Literal[True]) -> int: ...
@overload
def _num(where: str, key: str, v: Any, lo: float | None = ..., hi: float | None = ...,
         integer: Literal[False] = ...) -> float: ...
def _num(where: str, key: str, v: Any, lo: float | None = None, hi: float | None = None,
         integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise ScenarioError(f"{where}: {key} must be {'an integer' if integer else 'a number'}, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ScenarioError(f"{where}: {key}={v} out of range [{lo}, {hi}]")
    return v


def _coupling(where: str, raw: Any) -> Coupling:
    if raw is None or raw == "none":
        return Coupling()
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: coupling must be a kind or a table, got {raw!r}")
    extra = set(raw) - COUPLING_KEYS
    if extra:
        raise ScenarioError(f"{where}: unknown coupling keys {sorted(extra)} (known: {sorted(COUPLING_KEYS)})")
    kind = raw.get("kind", "none")
    if kind not in COUPLINGS:
        raise ScenarioError(f"{where}: coupling kind {kind!r} is not one of {COUPLINGS}")
    c = Coupling(kind=kind)
    if kind == "none":
        return c
    c = replace(c, lag=_num(where, "coupling.lag", raw.get("lag", 0), 1, 240, integer=True))
    if kind == "community_follows":
        c = replace(c, k=float(_num(where, "coupling.k", raw.get("k", c.k), 0.5, 50)),
                    factor=float(_num(where, "coupling.factor", raw.get("factor", c.factor), 1, 100)),
                    minutes=_num(where, "coupling.minutes", raw.get("minutes", c.minutes), 1, 240, integer=True))
    else:
        c = replace(c, move=float(_num(where, "coupling.move", raw.get("move", c.move), 0, 50)))
    return c


def _market(where: str, code: str, raw: dict[str, Any], defaults: dict[str, Any]) -> MarketSpec:
    extra = set(raw) - MARKET_KEYS
    if extra:
        raise ScenarioError(f"{where}: unknown keys {sorted(extra)} (known: {sorted(MARKET_KEYS)})")
    b = BUILTIN.get(code)
    v = dict(MARKET_DEFAULTS)
    if b is not None:
        v.update(korean_name=b[0], english_name=b[1], price=b[2], trades_per_second=b[3], aliases=list(b[4]))
    v.update(defaults)
    v.update(raw)
    if "price" not in v:
        raise ScenarioError(f"{where}: price is required for a market without built-in values")
    aliases = v.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise ScenarioError(f"{where}: aliases must be a list of non-empty strings")
    size = v["shock_size"]
    if not (isinstance(size, list) and len(size) == 2):
        raise ScenarioError(f"{where}: shock_size must be [low, high] in sigma")
    lo, hi = (float(_num(where, "shock_size", x, 0, 50)) for x in size)
    if lo > hi:
        raise ScenarioError(f"{where}: shock_size low {lo} > high {hi}")
    spec = MarketSpec(
        code=code, korean_name=str(v.get("korean_name", code)), english_name=str(v.get("english_name", code)),
        price=float(_num(where, "price", v["price"], 1e-6)),
        sigma=float(_num(where, "sigma", v["sigma"], 1e-6, 0.2)),
        level_sd=float(_num(where, "level_sd", v["level_sd"], 0, 1)),
        shock_rate=float(_num(where, "shock_rate", v["shock_rate"], 0, 1)), shock_size=(lo, hi),
        burst_rate=float(_num(where, "burst_rate", v["burst_rate"], 0, 1)),
        burst_factor=float(_num(where, "burst_factor", v["burst_factor"], 1, 100)),
        burst_minutes=_num(where, "burst_minutes", v["burst_minutes"], 1, 240, integer=True),
        mentions=float(_num(where, "mentions", v["mentions"], 0, 1000)),
        sentiment_bias=float(_num(where, "sentiment_bias", v["sentiment_bias"], -1, 1)),
        trades_per_second=float(_num(where, "trades_per_second", v["trades_per_second"], 0.001, 1000)),
        aliases=tuple(aliases), coupling=_coupling(where, v.get("coupling")),
    )
    if spec.coupling.kind != "none" and spec.mentions <= 0:
        raise ScenarioError(f"{where}: a coupled market needs mentions > 0")
    return spec


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    extra = set(data) - TOP_KEYS
    if extra:
        raise ScenarioError(f"{source}: unknown top-level keys {sorted(extra)} (known: {sorted(TOP_KEYS)})")
    seed = _num(source, "seed", data.get("seed"), 0, 2**63, integer=True) if "seed" in data else None
    if seed is None:
        raise ScenarioError(f"{source}: seed is required")
    try:
        epoch = datetime.fromisoformat(str(data.get("epoch", DEFAULT_EPOCH)))
    except ValueError as e:
        raise ScenarioError(f"{source}: epoch: {e}") from None
    if epoch.tzinfo is None:
        raise ScenarioError(f"{source}: epoch needs a UTC offset")
    comm = dict(COMMUNITY_DEFAULTS)
    raw_comm = data.get("community", {})
    bad = set(raw_comm) - set(COMMUNITY_DEFAULTS)
    if bad:
        raise ScenarioError(f"{source}: [community] unknown keys {sorted(bad)} (known: {sorted(COMMUNITY_DEFAULTS)})")
    comm.update(raw_comm)
    community = CommunitySpec(
        noise_per_minute=float(_num(source, "community.noise_per_minute", comm["noise_per_minute"], 0, 1000)),
        post_share=float(_num(source, "community.post_share", comm["post_share"], 0, 1)),
        polar_share=float(_num(source, "community.polar_share", comm["polar_share"], 0, 1)),
        sentiment_strength=float(_num(source, "community.sentiment_strength", comm["sentiment_strength"], 0, 1)),
    )
    defaults = data.get("defaults", {})
    bad = set(defaults) - MARKET_KEYS
    if bad:
        raise ScenarioError(f"{source}: [defaults] unknown keys {sorted(bad)}")
    markets_raw = data.get("markets")
    if not isinstance(markets_raw, dict) or not markets_raw:
        raise ScenarioError(f"{source}: at least one [markets.CODE] table is required")
    markets = {code: _market(f"{source} [markets.{code}]", code, raw, defaults) for code, raw in markets_raw.items()}
    return Scenario(name=str(data.get("name", Path(source).stem)), seed=int(seed),
                    epoch_ms=int(epoch.timestamp() * 1000), community=community, markets=markets, source=source)


def load_scenario(path: str | Path = "default") -> Scenario:
    """Read a scenario file; a bare name (`default`) is one of the scenarios shipped in this package."""
    p = Path(path)
    if not p.suffix and not p.exists():
        res = resources.files("coinpulse_simworld").joinpath("scenarios", f"{path}.toml")
        if not res.is_file():
            raise ScenarioError(f"no scenario file {path!r} and no shipped scenario of that name")
        text, source = res.read_text("utf-8"), f"{path} (shipped)"
    else:
        try:
            text, source = p.read_text("utf-8"), str(p)
        except OSError as e:
            raise ScenarioError(f"{p}: cannot read the scenario: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    return parse_scenario(data, source)
