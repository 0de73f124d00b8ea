"""Dashboard settings: `COINPULSE_DASHBOARD_*` environment variables, on top of the shared Settings."""

from __future__ import annotations

from functools import lru_cache

from coinpulse_common.settings import READER_ROLE, Settings, env_name
from pydantic import Field, model_validator


class DashboardSettings(Settings):
    dashboard_gold_schema: str = Field("gold", description="schema of the candle and mention tables")
    dashboard_silver_schema: str = Field("silver", description="schema of the post and comment tables")
    dashboard_candles_table: str = Field(
        "candles", description="candle table in the gold schema: one table with an `interval` column, or a name "
        "with `{tf}` (e.g. `candles_{tf}`) for one table per timeframe")
    dashboard_mentions_table: str = Field("mentions_1m", description="1-minute mention table in the gold schema")
    dashboard_posts_table: str = Field("posts", description="post table in the silver schema")
    dashboard_marts_schema: str = Field(
        "marts", description="schema of the link marts (`lead_lag`, `link_summary`, `price_community`, "
        "`mention_spikes`): the flows' `COINPULSE_MART_SCHEMA`")
    dashboard_aliases_path: str = Field(
        "", description="alias dictionary (JSON, the mention counter's format) used to find posts about a coin; "
        "default: the dictionary packaged in coinpulse_mentions, the one the candle agent counts with")
    dashboard_pool_min: int = Field(2, description="PostgreSQL connection pool: connections kept open",
        validation_alias=env_name("COINPULSE_DASHBOARD_POOL_MIN_CONNECTIONS", old="COINPULSE_DASHBOARD_POOL_MIN"))
    dashboard_pool_max: int = Field(8, description="PostgreSQL connection pool: most connections",
        validation_alias=env_name("COINPULSE_DASHBOARD_POOL_MAX_CONNECTIONS", old="COINPULSE_DASHBOARD_POOL_MAX"))
    dashboard_pool_timeout_s: float = Field(3.0, description="how long a request waits for a pooled connection")
    dashboard_statement_timeout_ms: int = Field(5000, description="statement_timeout of every dashboard query")
    dashboard_max_bars: int = Field(5000, description="largest number of candles one request may ask for")
    dashboard_kpi_window_minutes: int = Field(24 * 60, description="look-back of the top-10 and volatility tables")
    dashboard_posts_window_hours: int = Field(24, description="how far back recent posts are searched")
    dashboard_overview_cache: bool = Field(
        True, description="serve the overview from memory until the data version changes (new or revised candle)")
    dashboard_tick_s: float = Field(2.0, description="how often the live stream checks for new data")
    dashboard_max_live_viewers: int = Field(100, description="most open live streams (`/api/stream`); a viewer "
                                            "beyond it gets 503 and the page without live updates")
    dashboard_health_s: float = Field(10.0, description="how often pipeline health is refreshed")
    dashboard_probe_timeout_s: float = Field(2.0, description="timeout of one health probe (Connect, Prefect, ...)")
    dashboard_service_probes: str = Field(
        "", description="service health probes, `name=port/path` comma-separated, on `host`; default: `/health` "
        "of ingest-upbit, crawl-dc, candle-agent and sink on their `*_METRICS_PORT` settings")
    # the services' own port settings (the same variables), so that the default probes follow a service that moved
    ingest_metrics_port: int = Field(28101, description="ingest-upbit's health (/health) and Prometheus (/metrics) "
                                     "port (the dashboard probes it)")
    crawl_metrics_port: int = Field(28102, description="crawl-dc's health (/health) and Prometheus (/metrics) port")
    candle_metrics_port: int = Field(28103, description="candle agent's Faust web port (/health, /metrics)")
    sink_metrics_port: int = Field(28104, description="sink's health (/health) and Prometheus (/metrics) port "
                                   "(the dashboard probes it)")

    @model_validator(mode="after")
    def _default_probes(self) -> DashboardSettings:
        if not self.dashboard_service_probes.strip():
            self.dashboard_service_probes = ",".join(f"{name}={port}/health" for name, port in (
                ("ingest-upbit", self.ingest_metrics_port), ("crawl-dc", self.crawl_metrics_port),
                ("candle-agent", self.candle_metrics_port), ("sink", self.sink_metrics_port)))
        return self

    def reader_dsn(self) -> str:
        return self.pg_dsn(READER_ROLE, self.pg_reader_password)


@lru_cache(maxsize=1)
def get_dashboard_settings() -> DashboardSettings:
    return DashboardSettings()
