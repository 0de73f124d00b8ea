"""Settings of the flows: `COINPULSE_<FLOW>_*`, grouped by flow (`TIER_`, `ARCHIVE_`, `BACKUP_`, `LINK_`, `SPIKE_`,
`CHECK_`, `BACKFILL_`, `MART_`, `LAG_`; `FLOWS_` for what several flows share), see coinpulse_common.settings.

Every setting with a range is checked when the settings are made (each flow, the CLI, at start), and a wrong value
fails with its name, its value and what it would do: `backup_keep=0` would delete every dump, a negative tiering age
would tier today's partition, a key prefix with `..` would write outside the archive folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from coinpulse_common.paths import state_dir
from coinpulse_common.settings import Settings, env_name
from pydantic import Field, model_validator


class FlowSettings(Settings):
    tier_schemas: list[str] = Field(["silver", "gold"], description="schemas whose day-partitioned tables are tiered")
    tier_after_days: int = Field(14, description="a PostgreSQL partition older than this many days moves to S3")
    archive_after_days: int = Field(60, description="an S3 object older than this many days moves to local archive")
    tier_prefix: str = Field("", description="key prefix of the Parquet tier in the bucket (layout <table>/date=…)")
    archive_skip_prefixes: list[str] = Field(["backups/"], description="S3 prefixes the archive flow never moves")
    archive_dir_override: str | None = Field(None, description="local archive directory; default <state>/archive")
    lock_timeout_s: int = Field(30, description="how long tiering waits for a partition lock before retrying later",
        validation_alias=env_name("COINPULSE_TIER_LOCK_TIMEOUT_S", old="COINPULSE_LOCK_TIMEOUT_S"))
    export_batch_bytes: int = Field(8 << 20, description="Arrow batch size hint when streaming a partition",
        validation_alias=env_name("COINPULSE_TIER_EXPORT_BATCH_BYTES", old="COINPULSE_EXPORT_BATCH_BYTES"))
    parquet_row_group_rows: int = Field(256_000, description="rows per Parquet row group",
        validation_alias=env_name("COINPULSE_TIER_PARQUET_ROW_GROUP_ROWS", old="COINPULSE_PARQUET_ROW_GROUP_ROWS"))

    pg_bin: str = Field("/usr/lib/postgresql/15/bin", description="directory of pg_dump / pg_restore",
        validation_alias=env_name("COINPULSE_BACKUP_PG_BIN", fallback="COINPULSE_PG_BIN"))
    pg_socket_dir_override: str | None = Field(None, description="PostgreSQL unix socket dir; default <state>/pgsock",
        validation_alias=env_name("COINPULSE_BACKUP_PG_SOCKET_DIR", old="COINPULSE_PG_SOCKET_DIR_OVERRIDE"))
    backup_prefix: str = Field("backups/pg/", description="S3 prefix of database dumps")
    backup_keep: int = Field(7, description="how many daily dumps retention keeps",
        validation_alias=env_name("COINPULSE_BACKUP_KEEP_DUMPS", old="COINPULSE_BACKUP_KEEP"))

    trades_table: str = Field("silver.trades", description="silver trades table (columns of schemas/trade.avsc)",
        validation_alias=env_name("COINPULSE_FLOWS_TRADES_TABLE", old="COINPULSE_TRADES_TABLE"))
    candles_table: str = Field("gold.candles", description="candle table (columns of schemas/candle.avsc, one row per "
                               "market, interval and bucket_start); flows read and rebuild its 1-minute rows and "
                               "rebuild 5m/1h from them",
        validation_alias=env_name("COINPULSE_FLOWS_CANDLES_TABLE", old="COINPULSE_CANDLES_TABLE"))
    mentions_table: str = Field("gold.mentions_1m", description="1-minute mentions (columns of schemas/mention.avsc)",
        validation_alias=env_name("COINPULSE_FLOWS_MENTIONS_TABLE", old="COINPULSE_MENTIONS_TABLE"))
    marts_schema: str = Field("marts", description="schema the KPI marts are written to",
        validation_alias=env_name("COINPULSE_MART_SCHEMA", old="COINPULSE_MARTS_SCHEMA"))
    mart_window_minutes: int = Field(24 * 60, description="look-back of the ranking marts (top markets, volatility)")
    link_window_minutes: int = Field(240, description="minutes of the price–community link rewritten per refresh")
    vwap_windows_minutes: list[int] = Field([5, 15, 60, 240, 1440], description="windows of the VWAP mart",
        validation_alias=env_name("COINPULSE_MART_VWAP_WINDOWS_MINUTES", old="COINPULSE_VWAP_WINDOWS_MINUTES"))
    corr_window_rows: int = Field(60, description="rows (minutes) of the rolling price–community correlation",
        validation_alias=env_name("COINPULSE_LINK_CORR_WINDOW_ROWS", old="COINPULSE_CORR_WINDOW_ROWS"))
    link_lookback_minutes: int = Field(24 * 60, description="look-back (minutes of the dense minute grid) of the "
                                       "lead–lag statistics and the event study")
    link_max_lag_minutes: int = Field(15, description="lead–lag lags tested: every minute in [-max, +max]")
    link_alpha: float = Field(0.05, description="significance level of the link verdict (Bonferroni over the lags)")
    link_permutations: int = Field(999, description="block-permutation surrogates behind each lead–lag p-value")
    link_block_minutes: int = Field(30, description="block length of the permutation (keeps the autocorrelation "
                                    "of the community series within a block)")
    link_min_points: int = Field(120, description="fewest minute pairs (at lag 0) a lead–lag test needs; fewer is "
                                 "`insufficient_data`")
    link_event_horizons_minutes: list[int] = Field([1, 5, 15, 30], description="horizons of the event study after "
                                                   "mention spikes")
    link_seed: int = Field(0, description="seed of the permutation surrogates (a refresh is deterministic)")
    spike_baseline_minutes: int = Field(60, description="rolling baseline of the mention z-score")
    spike_z: float = Field(3.0, description="z-score from which a minute is a mention spike")
    spike_min_mentions: int = Field(5, description="fewest mentions a spike must have")
    alert_topic: str = Field("mention.alert", description="topic mention spikes are published to",
        validation_alias=env_name("COINPULSE_SPIKE_ALERT_TOPIC", old="COINPULSE_ALERT_TOPIC"))

    backfill_topic: str = Field("upbit.raw", description="bronze topic backfill reads (raw_frame records)")
    backfill_s3_prefix: str = Field("", description="key prefix in front of `bronze/` of the S3 bronze archive backfill "
                                    "reads (the sink's namespace prefix, `<ns>/`; empty in production)")
    backfill_s3_source: str = Field("upbit", description="source segment of the bronze keys backfill reads "
                                    "(`bronze/<source>/dt=…/hour=…/`)")
    backfill_s3_lookback_hours: int = Field(24 * 7, description="how far back the S3 backfill looks for a "
                                            "partition's last object before the range, to prove nothing in between "
                                            "is missing")
    check_window_minutes: int = Field(180, description="look-back of the candle-gap check")
    check_grace_minutes: int = Field(3, description="newest minutes the candle-gap check ignores (not closed yet)")
    crawl_topic: str = Field("dc.post", description="topic whose newest record tells crawl freshness",
        validation_alias=env_name("COINPULSE_CHECK_CRAWL_TOPIC", old="COINPULSE_CRAWL_TOPIC"))
    crawl_max_age_minutes: int = Field(30, description="no new post for longer than this is an alarm",
        validation_alias=env_name("COINPULSE_CHECK_CRAWL_MAX_AGE_MINUTES", old="COINPULSE_CRAWL_MAX_AGE_MINUTES"))
    lag_groups: list[str] = Field([], description="consumer groups checked for lag; empty = every group")
    lag_max: int = Field(100_000, description="consumer lag (records) above which the check fails",
        validation_alias=env_name("COINPULSE_LAG_MAX_RECORDS", old="COINPULSE_LAG_MAX"))
    tier_slack_days: int = Field(2, description="days a tier may run behind before the tier-size check fails")
    flows_metrics_port: int = Field(28105, description="Prometheus (/metrics) port of `coinpulse_flows serve`, bound "
                                    "to host: the metrics its flow runs set, e.g. coinpulse_consumer_records_lost "
                                    "(0 disables)")

    @model_validator(mode="after")
    def _bounds(self) -> FlowSettings:
        problems = bound_problems(self)
        if problems:
            raise ValueError("invalid flow settings: " + "; ".join(problems))
        return self

    @property
    def archive_dir(self) -> Path:
        return Path(self.archive_dir_override) if self.archive_dir_override else state_dir() / "archive"

    @property
    def pg_socket_dir(self) -> Path:
        return Path(self.pg_socket_dir_override) if self.pg_socket_dir_override else state_dir() / "pgsock"

    def adbc_uri(self) -> str:
        return self.pg_dsn()


def _prefix_problem(name: str, value: str) -> str | None:
    if value.startswith("/") or "\\" in value or any(seg in (".", "..") for seg in value.split("/")):
        return (f"{name}={value!r}: a key prefix must be relative, without `.`/`..` segments or backslashes "
                "(keys become paths under the archive folder)")
    if value and not value.endswith("/"):
        return f"{name}={value!r}: a key prefix must end with `/` (it is a folder)"
    return None


def bound_problems(s: FlowSettings) -> list[str]:
    """Every setting outside its range, with why the value is wrong."""
    out = []

    def need(ok: bool, text: str) -> None:
        if not ok:
            out.append(text)

    need(s.tier_after_days >= 0, f"tier_after_days={s.tier_after_days}: must be 0 or more (a negative age would move "
         "today's partition, still being written, to S3)")
    need(s.archive_after_days >= s.tier_after_days, f"archive_after_days={s.archive_after_days}: must be at least "
         f"tier_after_days={s.tier_after_days} (objects would leave S3 before PostgreSQL hands the day over)")
    need(s.backup_keep >= 1, f"backup_keep={s.backup_keep}: must be at least 1 (retention would delete every dump, "
         "the new one included)")
    need(s.lock_timeout_s >= 1, f"lock_timeout_s={s.lock_timeout_s}: must be at least 1 (0 means wait for ever)")
    need(s.export_batch_bytes >= 1 << 10, f"export_batch_bytes={s.export_batch_bytes}: must be at least 1024")
    need(s.parquet_row_group_rows >= 1, f"parquet_row_group_rows={s.parquet_row_group_rows}: must be at least 1")
    for name in ("mart_window_minutes", "link_window_minutes", "check_window_minutes", "crawl_max_age_minutes",
                 "spike_min_mentions", "backfill_s3_lookback_hours"):
        v = getattr(s, name)
        need(v >= 1, f"{name}={v}: must be at least 1 (an empty window)")
    need(s.corr_window_rows >= 2, f"corr_window_rows={s.corr_window_rows}: must be at least 2 (a correlation needs "
         "two rows)")
    need(s.spike_baseline_minutes >= 2, f"spike_baseline_minutes={s.spike_baseline_minutes}: must be at least 2 (a "
         "z-score needs a standard deviation)")
    need(s.spike_z > 0, f"spike_z={s.spike_z}: must be above 0 (every minute would be a spike)")
    need(bool(s.vwap_windows_minutes) and all(w >= 1 for w in s.vwap_windows_minutes),
         f"vwap_windows_minutes={s.vwap_windows_minutes}: each window must be at least 1 minute")
    need(0 <= s.check_grace_minutes < s.check_window_minutes, f"check_grace_minutes={s.check_grace_minutes}: must be "
         f"0 or more and below check_window_minutes={s.check_window_minutes} (the check would look at nothing)")
    need(1 <= s.link_max_lag_minutes, f"link_max_lag_minutes={s.link_max_lag_minutes}: must be at least 1 (lag 0 "
         "alone cannot tell who leads)")
    need(0 < s.link_alpha < 1, f"link_alpha={s.link_alpha}: must be between 0 and 1")
    n_lags = 2 * s.link_max_lag_minutes + 1
    need(n_lags / (s.link_permutations + 1) < s.link_alpha, f"link_permutations={s.link_permutations}: too few for "
         f"{n_lags} lags at link_alpha={s.link_alpha} (the smallest Bonferroni-adjusted p-value, {n_lags}/"
         f"(permutations + 1), must be below alpha, or no link could ever be significant)")
    need(s.link_block_minutes >= 1, f"link_block_minutes={s.link_block_minutes}: must be at least 1")
    need(s.link_min_points >= 10, f"link_min_points={s.link_min_points}: must be at least 10 (a correlation over a "
         "handful of minutes is noise)")
    need(s.link_lookback_minutes >= max(4 * s.link_block_minutes, s.link_min_points, 4 * s.link_max_lag_minutes),
         f"link_lookback_minutes={s.link_lookback_minutes}: must be at least 4 blocks (link_block_minutes="
         f"{s.link_block_minutes}), link_min_points={s.link_min_points} and 4 × link_max_lag_minutes="
         f"{s.link_max_lag_minutes} (the permutation needs blocks to shuffle, the test pairs to correlate)")
    need(bool(s.link_event_horizons_minutes) and all(
        1 <= h < s.link_lookback_minutes for h in s.link_event_horizons_minutes),
         f"link_event_horizons_minutes={s.link_event_horizons_minutes}: each horizon must be at least 1 minute and "
         f"below link_lookback_minutes={s.link_lookback_minutes}")
    need(s.lag_max >= 0, f"lag_max={s.lag_max}: must be 0 or more")
    need(s.tier_slack_days >= 0, f"tier_slack_days={s.tier_slack_days}: must be 0 or more")
    for name in ("tier_prefix", "backup_prefix", "backfill_s3_prefix"):
        problem = _prefix_problem(name, getattr(s, name))
        if problem:
            out.append(problem)
    for p in s.archive_skip_prefixes:
        need(bool(p), "archive_skip_prefixes: an empty prefix would keep every object in S3 for ever")
    return out


@lru_cache(maxsize=1)
def get_flow_settings() -> FlowSettings:
    return FlowSettings()
