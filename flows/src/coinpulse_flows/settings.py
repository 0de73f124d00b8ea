"""Settings of the flows (env prefix COINPULSE_, like every service)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from coinpulse_common.paths import state_dir
from coinpulse_common.settings import Settings
from pydantic import Field


class FlowSettings(Settings):
    tier_schemas: list[str] = Field(["silver", "gold"], description="schemas whose day-partitioned tables are tiered")
    tier_after_days: int = Field(14, description="a PostgreSQL partition older than this many days moves to S3")
    archive_after_days: int = Field(60, description="an S3 object older than this many days moves to local archive")
    tier_prefix: str = Field("", description="key prefix of the Parquet tier in the bucket (layout <table>/date=…)")
    archive_skip_prefixes: list[str] = Field(["backups/"], description="S3 prefixes the archive flow never moves")
    archive_dir_override: str | None = Field(None, description="local archive directory; default <state>/archive")
    lock_timeout_s: int = Field(30, description="how long tiering waits for a partition lock before retrying later")
    export_batch_bytes: int = Field(8 << 20, description="Arrow batch size hint when streaming a partition")
    parquet_row_group_rows: int = Field(256_000, description="rows per Parquet row group")

    pg_bin: str = Field("/usr/lib/postgresql/15/bin", description="directory of pg_dump / pg_restore")
    pg_socket_dir_override: str | None = Field(None, description="PostgreSQL unix socket dir; default <state>/pgsock")
    backup_prefix: str = Field("backups/pg/", description="S3 prefix of database dumps")
    backup_keep: int = Field(7, description="how many daily dumps retention keeps")

    trades_table: str = Field("silver.trades", description="silver trades table (columns of schemas/trade.avsc)")
    candles_table: str = Field("gold.candles", description="candle table (columns of schemas/candle.avsc, one row per "
                               "market, interval and bucket_start); flows read and rebuild its 1-minute rows and "
                               "rebuild 5m/1h from them")
    mentions_table: str = Field("gold.mentions_1m", description="1-minute mentions (columns of schemas/mention.avsc)")
    marts_schema: str = Field("marts", description="schema the KPI marts are written to")
    mart_window_minutes: int = Field(24 * 60, description="look-back of the ranking and link marts")
    link_window_minutes: int = Field(240, description="minutes of the price–community link rewritten per refresh")
    vwap_windows_minutes: list[int] = Field([5, 15, 60, 240, 1440], description="windows of the VWAP mart")
    corr_window_rows: int = Field(60, description="rows (minutes) of the rolling price–community correlation")
    lead_lags: list[int] = Field([-10, -5, -1, 0, 1, 5, 10], description="lags (minutes) of the lead–lag mart")
    spike_baseline_minutes: int = Field(60, description="rolling baseline of the mention z-score")
    spike_z: float = Field(3.0, description="z-score from which a minute is a mention spike")
    spike_min_mentions: int = Field(5, description="fewest mentions a spike must have")
    alert_topic: str = Field("mention.alert", description="topic mention spikes are published to")

    backfill_topic: str = Field("upbit.raw", description="bronze topic backfill reads (raw_frame records)")
    backfill_s3_prefix: str = Field("bronze/upbit.raw/", description="S3 bronze archive prefix backfill reads")
    check_window_minutes: int = Field(180, description="look-back of the candle-gap check")
    check_grace_minutes: int = Field(3, description="newest minutes the candle-gap check ignores (not closed yet)")
    crawl_topic: str = Field("dc.post", description="topic whose newest record tells crawl freshness")
    crawl_max_age_minutes: int = Field(30, description="no new post for longer than this is an alarm")
    lag_groups: list[str] = Field([], description="consumer groups checked for lag; empty = every group")
    lag_max: int = Field(100_000, description="consumer lag (records) above which the check fails")
    tier_slack_days: int = Field(2, description="days a tier may run behind before the tier-size check fails")

    @property
    def archive_dir(self) -> Path:
        return Path(self.archive_dir_override) if self.archive_dir_override else state_dir() / "archive"

    @property
    def pg_socket_dir(self) -> Path:
        return Path(self.pg_socket_dir_override) if self.pg_socket_dir_override else state_dir() / "pgsock"

    def adbc_uri(self) -> str:
        return self.pg_dsn()


@lru_cache(maxsize=1)
def get_flow_settings() -> FlowSettings:
    return FlowSettings()
