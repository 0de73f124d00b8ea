"""The one way records leave the ingest: deduped, Avro-encoded, handed to the non-blocking sink; bad input as dead
letters; a trade that could not be handed over (or that Kafka refused for good) un-seen and its market marked for
backfill.

A trade is marked seen *before* it is produced, so a duplicate arriving meanwhile is dropped. When the sink refuses
it (buffer full) or Kafka fails it for good, it is forgotten by the deduper and its market enters `pending` with the
earliest trade time to page back to; every (re)connect enters each market with its watermark (`open_gaps`). The
gap backfill (rest.py) empties `pending`. Nothing refused is lost.

A trade stamped further ahead of the wall clock than the `ingest_max_future_skew_s` setting allows is dead-lettered
and never seen: its event time would be a lie. Shared by the socket feed (feed.py) and the REST backfill (rest.py).
"""

from __future__ import annotations

from typing import Any

from coinpulse_common.deadletter import dead_letter_record
from coinpulse_common.logging import get_logger
from confluent_kafka.schema_registry import SchemaRegistryClient

from coinpulse_ingest_upbit.avro import AvroEncoder
from coinpulse_ingest_upbit.dedupe import TradeDeduper
from coinpulse_ingest_upbit.settings import IngestSettings
from coinpulse_ingest_upbit.sink import KafkaSink
from coinpulse_ingest_upbit.stats import Stats

log = get_logger("coinpulse.ingest_upbit.emit")
SERVICE = "ingest-upbit"


def epoch_ms(v: Any) -> int:
    """A decoded timestamp-millis as epoch ms (fastavro and the confluent deserializer may give a datetime)."""
    if isinstance(v, int):
        return v
    return int(v.timestamp() * 1000)


class Emitter:
    def __init__(self, settings: IngestSettings, stats: Stats, dedupe: TradeDeduper, sink: KafkaSink,
                 registry: SchemaRegistryClient):
        s = self.s = settings
        self.stats = stats
        self.dedupe = dedupe
        self.sink = sink
        self.max_future_ms = int(s.ingest_max_future_skew_s * 1000)
        w = s.ingest_schema_wait_s
        self.enc_trade = AvroEncoder(registry, s.trade_topic, "trade", w)
        self.enc_ticker = AvroEncoder(registry, s.ticker_topic, "ticker", w)
        self.enc_orderbook = AvroEncoder(registry, s.orderbook_topic, "orderbook", w)
        self.enc_raw = AvroEncoder(registry, s.raw_topic, "raw_frame", w)
        self.enc_dlq = AvroEncoder(registry, s.dlq_topic, "dead_letter", w)
        self.pending: dict[str, int | None] = {}  # market -> watermark before its gap, until backfilled
        self._keys: dict[str, bytes] = {}

    def key(self, market: str) -> bytes:
        k = self._keys.get(market)
        if k is None:
            k = self._keys[market] = market.encode()
        return k

    def dead_letter(self, reason: str, payload: bytes, source: str, key: str | None = None,
                    context: dict[str, str] | None = None) -> None:
        rec = dead_letter_record(SERVICE, reason, payload, source=source, key=key, context=context)
        self.stats.dlq += 1
        self.sink.send(self.s.dlq_topic, (key or "").encode(), self.enc_dlq.encode(rec), rec["failed_at"])
        if self.stats.dlq <= 20 or self.stats.dlq % 1000 == 0:
            log.warning("dead_letter", reason=reason[:200], source=source, total=self.stats.dlq)

    def open_gaps(self, markets: list[str]) -> None:
        """A (re)connect: the gap starts now; remember each market's watermark until it is backfilled."""
        for m in markets:
            if m not in self.pending:
                self.pending[m] = self.dedupe.watermark(m)

    def delivery_failed(self, msg: Any) -> None:
        """A record Kafka refused for good: a trade is un-seen and its market backfilled, so it comes back."""
        if msg.topic() != self.s.trade_topic:
            return
        try:
            rec = self.enc_trade.decode(msg.value())
        except Exception:  # noqa: BLE001 - not ours to read: nothing to un-see
            return
        self.unsee(rec["market"], rec["sequential_id"], epoch_ms(rec["trade_timestamp"]))

    def unsee(self, market: str, sid: int, ts: int) -> None:
        self.dedupe.forget(market, sid)
        if market not in self.pending:
            self.pending[market] = ts
        elif self.pending[market] is not None:  # None already means "back as far as the initial window"
            self.pending[market] = min(self.pending[market] or ts, ts)

    def future_trade(self, rec: dict[str, Any], payload: bytes, source: str) -> bool:
        """True (and dead-lettered) when the trade is stamped further ahead of the wall clock than allowed."""
        ahead = rec["trade_timestamp"] - rec["received_at"]
        if ahead <= self.max_future_ms:
            return False
        self.stats.future_trades += 1
        self.dead_letter("future_timestamp", payload, source, rec["market"],
                         {"sequential_id": str(rec["sequential_id"]), "ahead_ms": str(ahead)})
        return True

    def emit_trade(self, rec: dict[str, Any]) -> bool:
        market, sid = rec["market"], rec["sequential_id"]
        if not self.dedupe.add(market, sid, rec["trade_timestamp"]):
            self.stats.duplicates += 1
            return False
        try:
            value = self.enc_trade.encode(rec)
        except Exception:
            self.dedupe.forget(market, sid)
            raise
        return self._produce_seen(market, sid, rec["trade_timestamp"], value, rec["received_at"], rec["backfilled"])

    def send_trade(self, market: str, sid: int, ts: int, value: bytes, received_at: int, backfilled: bool) -> bool:
        """An already encoded trade: deduped, then produced (as emit_trade)."""
        if not self.dedupe.add(market, sid, ts):
            self.stats.duplicates += 1
            return False
        return self._produce_seen(market, sid, ts, value, received_at, backfilled)

    def _produce_seen(self, market: str, sid: int, ts: int, value: bytes, received_at: int, backfilled: bool) -> bool:
        if self.sink.send(self.s.trade_topic, self.key(market), value, received_at):
            self.stats.trades += 1
            if backfilled:
                self.stats.backfilled += 1
            return True
        # refused by a full buffer: un-see it and let a backfill bring it back
        self.unsee(market, sid, ts)
        return False
