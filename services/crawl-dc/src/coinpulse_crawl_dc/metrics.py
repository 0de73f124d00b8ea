"""Prometheus metrics of the crawler (served on 127.0.0.1:COINPULSE_CRAWL_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter("dc_crawl_requests_total", "HTTP requests made", ["gallery"])
NEW_POSTS = Counter("dc_crawl_new_posts_total", "new posts emitted", ["gallery"])
NEW_COMMENTS = Counter("dc_crawl_new_comments_total", "new or changed comments emitted", ["gallery"])
UPDATED_POSTS = Counter("dc_crawl_updated_posts_total", "posts whose comments were re-fetched", ["gallery"])
DELETED_POSTS = Counter("dc_crawl_deleted_posts_total", "posts marked deleted", ["gallery"])
ERRORS = Counter("dc_crawl_errors_total", "errors (failed requests, Kafka failures)", ["gallery", "kind"])
ALARMS = Counter("dc_crawl_parse_alarms_total", "pages/fields the parser expected but did not find", ["gallery", "kind"])
DEAD_LETTERS = Counter("dc_crawl_dead_letters_total", "records sent to dlq.crawl-dc", ["gallery"])
GIVEN_UP = Counter(
    "dc_crawl_given_up_posts_total", "posts whose pages failed to parse too many cycles in a row (dead-lettered, "
    "skipped until their reply count changes)", ["gallery"]
)
CYCLES = Counter("dc_crawl_cycles_total", "crawl cycles by final status", ["gallery", "status"])
CYCLE_SECONDS = Histogram(
    "dc_crawl_cycle_seconds", "cycle duration", ["gallery"], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200)
)
LAST_SUCCESS = Gauge("dc_crawl_last_success_timestamp_seconds", "end of the last committed cycle", ["gallery"])
WATERMARK = Gauge("dc_crawl_watermark_post_no", "newest post fully crawled", ["gallery"])

_started = False


def serve(port: int, host: str = "127.0.0.1") -> None:
    global _started
    if port and not _started:
        start_http_server(port, addr=host)
        _started = True
