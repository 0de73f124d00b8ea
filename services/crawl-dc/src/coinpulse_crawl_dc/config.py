"""crawl-dc settings: `COINPULSE_DC_*` (and `COINPULSE_CRAWL_METRICS_PORT`) in the environment, durations in
seconds with `_S` (see coinpulse_common.settings for the naming rule and the deprecated former names)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from coinpulse_common.paths import state_dir
from coinpulse_common.settings import PLACEHOLDER_PREFIX, Settings, env_name, is_loopback_host
from pydantic import Field

DEV_HASH_KEY = "coinpulse-dev-only-hash-key"
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 "
    "coinpulse-crawl-dc/0.1 (+research; obeys robots.txt)"
)


class CrawlSettings(Settings):
    env: str = Field("dev", description="deployment environment; anything but `dev`, or a crawl target other than the local "
        "simulator, requires a real DC_HASH_KEY",
        validation_alias=env_name("COINPULSE_DC_ENV", old="COINPULSE_ENV"))
    dc_base_url: str = Field("https://gall.dcinside.com", description="gallery site base URL (the simulator in dev)")
    dc_galleries: str = Field(
        "bitcoins_new1:normal", description="comma-separated `id:kind` (kind normal, minor or mini)"
    )
    dc_user_agent: str = Field(DEFAULT_USER_AGENT, description="User-Agent the crawler identifies itself with")
    dc_interval: float = Field(300.0, description="seconds between the starts of two crawl cycles",
        validation_alias=env_name("COINPULSE_DC_INTERVAL_S", old="COINPULSE_DC_INTERVAL"))
    dc_hash_key: str = Field(DEV_HASH_KEY, description="secret key of the author/IP pseudonymisation HMAC")
    dc_download_delay: float = Field(1.5, description="seconds between two requests to the same host (>= 1 live)",
        validation_alias=env_name("COINPULSE_DC_DOWNLOAD_DELAY_S", old="COINPULSE_DC_DOWNLOAD_DELAY"))
    dc_autothrottle_max_delay: float = Field(30.0, description="AutoThrottle upper bound on the delay, seconds",
        validation_alias=env_name("COINPULSE_DC_AUTOTHROTTLE_MAX_DELAY_S", old="COINPULSE_DC_AUTOTHROTTLE_MAX_DELAY"))
    dc_retry_times: int = Field(3, description="retries of a request failing with 5xx/timeouts")
    dc_backoff_base: float = Field(2.0, description="first retry waits this many seconds, doubling each retry",
        validation_alias=env_name("COINPULSE_DC_BACKOFF_BASE_S", old="COINPULSE_DC_BACKOFF_BASE"))
    dc_backoff_max: float = Field(60.0, description="longest backoff wait, seconds",
        validation_alias=env_name("COINPULSE_DC_BACKOFF_MAX_S", old="COINPULSE_DC_BACKOFF_MAX"))
    dc_timeout: float = Field(30.0, description="download timeout per request, seconds",
        validation_alias=env_name("COINPULSE_DC_TIMEOUT_S", old="COINPULSE_DC_TIMEOUT"))
    dc_list_num: int = Field(100, description="rows per list page requested (site allows 30, 50, 100)",
        validation_alias=env_name("COINPULSE_DC_LIST_PAGE_ROWS", old="COINPULSE_DC_LIST_NUM"))
    dc_recent_pages: int = Field(1, description="list pages always walked to watch reply counts of recent posts")
    dc_max_pages: int = Field(20, description="at most this many list pages per cycle")
    dc_backfill_pages: int = Field(1, description="list pages read on the very first cycle of a gallery")
    dc_keep_posts: int = Field(5000, description="posts per gallery whose reply counts/comments stay in state")
    dc_transactional_id: str = Field("coinpulse-crawl-dc", description="Kafka transactional.id prefix")
    dc_topic_prefix: str = Field("", description="prefix for the dc.* topics (tests use a unique one)")
    crawl_metrics_port: int = Field(28102, description="metrics (/metrics) and health (/health) port (0 disables)")
    dc_state_path: str | None = Field(None, description="SQLite state file; default <state_dir>/crawl-dc/state.db")

    def state_file(self) -> Path:
        if self.dc_state_path:
            return Path(self.dc_state_path)
        return state_dir() / "crawl-dc" / "state.db"

    def hash_key_is_dev(self) -> bool:
        return self.dc_hash_key == DEV_HASH_KEY

    def targets_local_simulator(self) -> bool:
        """The crawl target is on this host (the bundled simulator): a loopback address or `localhost`."""
        return is_loopback_host(urlsplit(self.dc_base_url).hostname)

    def check(self) -> None:
        """Refuse the built-in pseudonymisation key, or `.env.example`'s placeholder, unless the crawl target is the
        local simulator in dev: that key is public, so a real site's authors would be pseudonymised with it."""
        weak = "the built-in dev key" if self.hash_key_is_dev() else (
            "the placeholder from .env.example" if self.dc_hash_key.startswith(PLACEHOLDER_PREFIX) else None)
        if weak is None or (self.env == "dev" and self.targets_local_simulator()):
            return
        why = (f"COINPULSE_DC_ENV={self.env}" if self.env != "dev"
               else f"COINPULSE_DC_BASE_URL={self.dc_base_url} is not the local simulator")
        raise ValueError(f"COINPULSE_DC_HASH_KEY is {weak} ({why}): set COINPULSE_DC_HASH_KEY to a long random "
                         "secret (for example `openssl rand -hex 32`) and keep it: changing it changes every pseudonym")

    def topic(self, base: str) -> str:
        return f"{self.dc_topic_prefix}{base}"


@lru_cache(maxsize=1)
def get_crawl_settings() -> CrawlSettings:
    return CrawlSettings()
