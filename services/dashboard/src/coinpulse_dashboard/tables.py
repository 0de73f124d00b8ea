"""Where the dashboard reads from: every table name in one place, so aligning with the sink's migrations is one
edit (or one setting). The names are validated and quoted; nothing from a request ever reaches an identifier."""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

TIMEFRAMES = {"1m": 60, "5m": 300, "1h": 3600}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _check(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier")
    return name


@dataclass(frozen=True)
class Tables:
    gold: str = "gold"
    silver: str = "silver"
    candles_name: str = "candles"  # one table with `interval`, or `candles_{tf}` for one table per timeframe
    mentions_name: str = "mentions_1m"
    posts_name: str = "posts"
    marts: str = "marts"  # the flows' link marts: lead_lag, link_summary, price_community, mention_spikes

    def __post_init__(self) -> None:
        for n in (self.gold, self.silver, self.marts, self.mentions_name, self.posts_name,
                  self.candles_name.replace("{tf}", "1m")):
            _check(n)

    @property
    def per_timeframe(self) -> bool:
        return "{tf}" in self.candles_name

    def candles(self, tf: str) -> sql.Identifier:
        if tf not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {tf!r}")
        name = self.candles_name.replace("{tf}", tf)
        return sql.Identifier(self.gold, name)

    def candles_filter(self, tf: str) -> sql.Composable:
        """`AND interval = '<tf>'` for the one-table layout, nothing for the per-timeframe layout."""
        if self.per_timeframe:
            return sql.SQL("")
        return sql.SQL(" AND {} = {}").format(sql.Identifier("interval"), sql.Literal(tf))

    @property
    def mentions(self) -> sql.Identifier:
        return sql.Identifier(self.gold, self.mentions_name)

    @property
    def posts(self) -> sql.Identifier:
        return sql.Identifier(self.silver, self.posts_name)

    def mart(self, name: str) -> sql.Identifier:
        """A link mart table (`lead_lag`, `link_summary`, `price_community`, `mention_spikes`)."""
        return sql.Identifier(self.marts, _check(name))

    @classmethod
    def from_settings(cls, s) -> Tables:
        return cls(s.dashboard_gold_schema, s.dashboard_silver_schema, s.dashboard_candles_table,
                   s.dashboard_mentions_table, s.dashboard_posts_table, s.dashboard_marts_schema)
