"""Kafka side of a gallery: one transactional producer per gallery, one transaction per cycle.

Why transactions: a cycle's records (bronze pages, silver posts/comments, dead letters, the crawl-run report) become
visible to `read_committed` consumers together, or not at all. A crawler killed mid-cycle leaves an open
transaction that the next process aborts when it calls `init_transactions()` with the same transactional.id, so
the re-run does not double anything; the SQLite state advances only after `commit_transaction()` returned.
The one remaining window — killed between the Kafka commit and the SQLite write, a few milliseconds — re-emits that
cycle's records once; keys make downstream upserts idempotent.
"""

from __future__ import annotations

from typing import Any

from coinpulse_common.avro import TopicCodec
from coinpulse_common.kafka import DeadLetters, producer
from coinpulse_common.logging import get_logger

from coinpulse_crawl_dc.config import CrawlSettings

log = get_logger("coinpulse.crawl_dc.sink")
_CODECS: dict[tuple[str, str], TopicCodec] = {}


def codec(cfg: CrawlSettings, base_topic: str) -> TopicCodec:
    topic = cfg.topic(base_topic)
    k = (topic, base_topic)
    if k not in _CODECS:
        _CODECS[k] = TopicCodec(topic, cfg, schema_topic=base_topic)
    return _CODECS[k]


class KafkaSink:
    def __init__(self, cfg: CrawlSettings, gallery: str, init_timeout_s: float = 60.0):
        self.cfg = cfg
        self.gallery = gallery
        self.producer = producer(
            cfg,
            **{
                "transactional.id": f"{cfg.dc_transactional_id}-{gallery}",
                "transaction.timeout.ms": 900_000,
                "message.max.bytes": 4_000_000,
            },
        )
        # fences an older instance and aborts whatever transaction it left open
        self.producer.init_transactions(init_timeout_s)
        self.dead = DeadLetters("crawl-dc", self.producer, cfg)
        self.in_tx = False
        self.sent = 0
        self.delivery_errors: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.delivery_errors.append(str(err))

    def begin(self) -> None:
        self.producer.begin_transaction()
        self.in_tx = True
        self.sent = 0
        self.delivery_errors = []

    def send(self, base_topic: str, key: str, value: dict[str, Any]) -> None:
        c = codec(self.cfg, base_topic)
        data = c.encode(value)
        self.producer.produce(c.topic, key=key.encode(), value=data, on_delivery=self._on_delivery)
        self.producer.poll(0)
        self.sent += 1

    def dead_letter(self, reason: str, payload: bytes | str, *, source: str | None, key: str | None,
                    context: dict[str, str] | None = None) -> None:
        self.dead.send(reason, payload, source=source, key=key, context=context)  # the record rule: deadletter.py
        self.producer.poll(0)

    def commit(self, timeout_s: float = 120.0) -> None:
        """Flush and commit; raises (after aborting) if anything was not acknowledged."""
        try:
            self.producer.flush(timeout_s)
            if self.delivery_errors:
                raise RuntimeError(f"{len(self.delivery_errors)} records not delivered: {self.delivery_errors[0]}")
            self.producer.commit_transaction(timeout_s)
        except Exception:
            self.abort()
            raise
        finally:
            self.in_tx = False

    def abort(self) -> None:
        try:
            self.producer.abort_transaction(60)
        except Exception as e:  # noqa: BLE001 - the transaction is gone either way
            log.warning("abort_failed", gallery=self.gallery, error=str(e))
        self.in_tx = False
