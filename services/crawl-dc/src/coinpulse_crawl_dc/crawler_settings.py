"""Scrapy settings from CrawlSettings: polite by default (robots.txt, one request in flight per host, a delay of a
second or more adapted by AutoThrottle, exponential backoff, 403/429 handed to the spider to stop the cycle)."""

from __future__ import annotations

from typing import Any

from coinpulse_crawl_dc.config import CrawlSettings


def scrapy_settings(cfg: CrawlSettings) -> dict[str, Any]:
    delay = cfg.dc_download_delay
    return {
        "BOT_NAME": "coinpulse-crawl-dc",
        "USER_AGENT": cfg.dc_user_agent,
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": 1,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "DOWNLOAD_DELAY": delay,
        "RANDOMIZE_DOWNLOAD_DELAY": True,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": delay,
        "AUTOTHROTTLE_MAX_DELAY": max(delay, cfg.dc_autothrottle_max_delay),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "DOWNLOAD_TIMEOUT": cfg.dc_timeout,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": cfg.dc_retry_times,
        "RETRY_HTTP_CODES": [500, 502, 503, 504, 522, 524, 408],
        "COINPULSE_BACKOFF_BASE": cfg.dc_backoff_base,
        "COINPULSE_BACKOFF_MAX": cfg.dc_backoff_max,
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "coinpulse_crawl_dc.middlewares.BackoffRetryMiddleware": 550,
        },
        "ITEM_PIPELINES": {"coinpulse_crawl_dc.pipelines.KafkaPipeline": 300},
        "HTTPERROR_ALLOWED_CODES": [403, 429],
        "DEFAULT_REQUEST_HEADERS": {
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5",
        },
        "COOKIES_ENABLED": True,
        "TELNETCONSOLE_ENABLED": False,
        # a cycle must end well inside Kafka's transaction timeout (15 min)
        "CLOSESPIDER_TIMEOUT": 600,
        "LOG_LEVEL": cfg.log_level.upper(),
        "LOG_FORMAT": "%(levelname)s %(name)s %(message)s",
    }
