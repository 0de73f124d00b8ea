"""Every topic name and its declaration, in one place.

`coinpulse up` creates the topics in `TOPICS` (partitions, cleanup policy, retention) and registers each topic's
value schema (`schemas/<schema>.avsc`) under the subject `<topic>-value`. Services import the names from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 3600 * 1000

# bronze: every frame / page exactly as received
UPBIT_RAW = "upbit.raw"
DC_RAW = "dc.raw"
# silver: typed, deduplicated
UPBIT_TRADE = "upbit.trade"
UPBIT_TICKER = "upbit.ticker"
UPBIT_ORDERBOOK = "upbit.orderbook"
DC_POST = "dc.post"
DC_COMMENT = "dc.comment"
DC_CRAWL_RUN = "dc.crawl-run"
# gold: derived, idempotent, compacted
CANDLE_1M = "candle.1m"
CANDLE_5M = "candle.5m"
CANDLE_1H = "candle.1h"
MENTION_1M = "mention.1m"
MENTION_ALERT = "mention.alert"
# trades later than the allowed lateness
CANDLE_LATE = "candle.late"

CANDLE_TOPICS = {"1m": CANDLE_1M, "5m": CANDLE_5M, "1h": CANDLE_1H}

SERVICES = ("ingest-upbit", "crawl-dc", "candle-agent", "sink", "connect")


def dlq(service: str) -> str:
    """Dead-letter topic of a service: `dlq.<service>`."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    return f"dlq.{service}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str  # file stem in schemas/
    tier: str  # bronze | silver | gold | ops
    partitions: int = 3
    compacted: bool = False
    retention_ms: int = 7 * DAY_MS
    key: str = ""  # what the record key is, for humans
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{self.name}-value"

    def config(self) -> dict[str, str]:
        cfg = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(-1 if self.compacted else self.retention_ms),
        }
        if self.compacted:
            cfg.update({"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(6 * 3600 * 1000)})
        cfg.update(self.extra)
        return cfg


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(UPBIT_RAW, "raw_frame", "bronze", 3, retention_ms=3 * DAY_MS, key="market or connection id"),
    TopicSpec(UPBIT_TRADE, "trade", "silver", 3, key="market"),
    TopicSpec(UPBIT_TICKER, "ticker", "silver", 3, key="market"),
    TopicSpec(UPBIT_ORDERBOOK, "orderbook", "silver", 3, retention_ms=2 * DAY_MS, key="market"),
    TopicSpec(DC_RAW, "raw_page", "bronze", 1, retention_ms=3 * DAY_MS, key="url"),
    TopicSpec(DC_POST, "post", "silver", 3, key="gallery/post_no"),
    TopicSpec(DC_COMMENT, "comment", "silver", 3, key="gallery/post_no/comment_no"),
    TopicSpec(DC_CRAWL_RUN, "crawl_run", "ops", 1, retention_ms=30 * DAY_MS, key="gallery"),
    TopicSpec(CANDLE_1M, "candle", "gold", 3, compacted=True, key="market|bucket_start"),
    TopicSpec(CANDLE_5M, "candle", "gold", 3, compacted=True, key="market|bucket_start"),
    TopicSpec(CANDLE_1H, "candle", "gold", 3, compacted=True, key="market|bucket_start"),
    TopicSpec(MENTION_1M, "mention", "gold", 3, compacted=True, key="market|bucket_start"),
    TopicSpec(MENTION_ALERT, "mention_alert", "gold", 1, compacted=True, key="market|bucket_start"),
    TopicSpec(CANDLE_LATE, "trade", "ops", 1, retention_ms=30 * DAY_MS, key="market"),
    *(TopicSpec(dlq(s), "dead_letter", "ops", 1, retention_ms=30 * DAY_MS, key="source key") for s in SERVICES),
)

BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}


def gold_key(market: str, bucket_start_ms: int) -> str:
    """Key of a gold record: `market|bucket_start` with bucket_start in epoch milliseconds."""
    return f"{market}|{bucket_start_ms}"
