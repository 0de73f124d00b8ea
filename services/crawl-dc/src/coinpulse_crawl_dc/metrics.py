"""Prometheus metrics and health of the crawler, served on 127.0.0.1:COINPULSE_CRAWL_METRICS_PORT by
coinpulse_common.serve (the global registry):

- `GET /metrics`: the Prometheus text format;
- `GET /health`: JSON, 200 when every configured gallery has committed a cycle recently (or the crawler started less
  than that long ago), 503 with a `reason` otherwise. "Recently" is `stale_after_s` = 3 cycle intervals, at least
  5 minutes: cycles are spaced `dc_interval` start to start, and one may run long;
- any other path: 404 (the dashboard shows a probe that asks the wrong path as such).
"""

from __future__ import annotations

import time
from typing import Any

from coinpulse_common.serve import MetricsServer
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("dc_crawl_requests_total", "HTTP requests made", ["gallery"])
NEW_POSTS = Counter("dc_crawl_new_posts_total", "new posts emitted", ["gallery"])
NEW_COMMENTS = Counter("dc_crawl_new_comments_total", "new or changed comments emitted", ["gallery"])
UPDATED_POSTS = Counter("dc_crawl_updated_posts_total", "posts whose comments were re-fetched", ["gallery"])
DELETED_POSTS = Counter("dc_crawl_deleted_posts_total", "posts marked deleted", ["gallery"])
ERRORS = Counter("dc_crawl_errors_total", "errors (failed requests, Kafka failures)", ["gallery", "kind"])
ALARMS = Counter("dc_crawl_parse_alarms_total", "pages/fields the parser expected but did not find", ["gallery", "kind"])
DEAD_LETTERS = Counter("dc_crawl_dead_letters_total", "records sent to dlq.crawl-dc", ["gallery"])
GIVEN_UP = Counter(
    "dc_crawl_given_up_posts_total", "posts whose pages failed too many cycles in a row (dead-lettered, skipped until "
    "their reply count changes), by the last failure's cause: parse (did not parse) or request (could not be fetched)",
    ["gallery", "cause"]
)
CYCLES = Counter("dc_crawl_cycles_total", "crawl cycles by final status", ["gallery", "status"])
CYCLE_SECONDS = Histogram(
    "dc_crawl_cycle_seconds", "cycle duration", ["gallery"], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200)
)
LAST_SUCCESS = Gauge("dc_crawl_last_success_timestamp_seconds", "end of the last committed cycle", ["gallery"])
WATERMARK = Gauge("dc_crawl_watermark_post_no", "newest post fully crawled", ["gallery"])

_server: MetricsServer | None = None


def stale_after_s(interval_s: float) -> float:
    return max(3 * interval_s, 300.0)


def _samples(metric: Any, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for m in metric.collect() for s in m.samples if s.name == name]


def health(galleries: list[str], interval_s: float, started_at: float, now: float | None = None) -> dict[str, Any]:
    """Per gallery: age of its last committed cycle and its cycle counts by status; ok and the reason if not."""
    now = time.time() if now is None else now
    stale = stale_after_s(interval_s)
    last = {lb["gallery"]: v for lb, v in _samples(LAST_SUCCESS, "dc_crawl_last_success_timestamp_seconds")}
    cycles: dict[str, dict[str, int]] = {}
    for lb, v in _samples(CYCLES, "dc_crawl_cycles_total"):
        cycles.setdefault(lb["gallery"], {})[lb["status"]] = int(v)
    problems, out = [], {}
    for g in galleries:
        age = round(now - last[g], 1) if g in last else None
        out[g] = {"last_success_age_s": age, "cycles": cycles.get(g, {})}
        if age is None and now - started_at > stale:
            problems.append(f"gallery {g}: no committed cycle in the {now - started_at:.0f} s since start")
        elif age is not None and age > stale:
            problems.append(f"gallery {g}: last committed cycle {age:.0f} s ago (expected every {interval_s:g} s)")
    body: dict[str, Any] = {"ok": not problems, "uptime_s": round(now - started_at, 1), "interval_s": interval_s,
                            "stale_after_s": stale, "galleries": out}
    if problems:
        failed = sum(c.get("failed", 0) for c in cycles.values())
        body["reason"] = "; ".join(problems) + (f" ({failed} failed cycles: see the crawler's log)" if failed else "")
    return body


def serve(port: int, host: str = "127.0.0.1", galleries: list[str] | None = None, interval_s: float = 300.0) -> None:
    """Start the metrics and health server (coinpulse_common.serve) in a daemon thread (once per process; port 0
    disables it). A port in use raises OSError."""
    global _server
    if not port or _server is not None:
        return
    started_at, names = time.time(), list(galleries or [])

    def check() -> tuple[bool, dict[str, Any]]:
        h = health(names, interval_s, started_at)
        return h["ok"], h

    server = MetricsServer("crawl-metrics", check, host=host, port=port)
    server.start()
    _server = server
