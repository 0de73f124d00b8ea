"""The Faust app: agents wire topics and tables to the plain rules (engine.py, mentions.py).

Agents (verb_noun):
- `build_candles`: upbit.trade → candle.1m / candle.5m / candle.1h, late trades → candle.late;
- `match_mentions`: dc.post + dc.comment → internal market-keyed hits topic (plus event-time ticks);
- `count_mentions`: hits → mention.1m.
Values are Avro (Confluent wire format) through coinpulse_common.wire (fastavro; each output is
written with exactly its declared schema's registered id, never another's); Faust
only moves bytes. Trades are consumed in chunks of records (bulk.py), one Faust event per partition and fetch.
A record that cannot be decoded or validated goes to dlq.candle-agent with the reason.
A timer advances event time for partitions that are idle and fully read, so the last candles close.

HTTP (Faust's web server on `COINPULSE_CANDLE_METRICS_PORT`; Faust starts it once table recovery is done):
- `GET /metrics`: Prometheus text (counters, assigned partitions, event time per partition);
- `GET /health`: JSON, 200 when the worker holds partitions of the trade topic, is not rebalancing and has
  recovered its tables; 503 with a `reason` otherwise. It reports the assignment and the event-time (watermark)
  age per engine; an old watermark alone is not unhealthy (a quiet market has no trades to move it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import faust
from coinpulse_common import topics
from coinpulse_common.deadletter import dead_letter_record
from coinpulse_common.logging import get_logger
from coinpulse_common.paths import state_dir
from coinpulse_mentions import comment_document, default_matcher, document_hits, post_document
from confluent_kafka.admin import AdminClient
from faust.types import TP

from coinpulse_candle_agent.bulk import ChunkMessage, use_bulk_transport
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.engine import CandleEngine
from coinpulse_candle_agent.mentions import DocHits, MentionEngine
from coinpulse_candle_agent.settings import CandleSettings
from coinpulse_candle_agent.state import PartitionEngines
from coinpulse_candle_agent.trades import (
    BadTrade,
    FutureTimestamp,
    check_not_future,
    dead_letter_reason,
    trade_from_record,
)
from coinpulse_candle_agent.wire import AvroValueDecoder, AvroValueEncoder

log = get_logger("coinpulse.candle_agent")
SERVICE = "candle-agent"
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
TRADE_METRIC = {"ok": "trades_ok", "dup": "trades_duplicate", "late": "trades_late"}
METADATA_MAX_AGE_MS = 5_000  # see the App's consumer_metadata_max_age_ms
RAW_TABLE = {"key_type": bytes, "value_type": bytes, "schema": faust.Schema(**RAW)}


def topic_partitions(s: CandleSettings, topic: str) -> int:
    md = AdminClient({"bootstrap.servers": s.bootstrap}).list_topics(topic, timeout=10)  # as coinpulse_common.kafka.admin
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise RuntimeError(f"input topic {topic!r} does not exist (run `coinpulse up`): {t and t.error}")
    return len(t.partitions)


def now_ms() -> int:
    return int(time.time() * 1000)


class CandleAgent:
    """Builds the Faust app and holds what the agents share (codecs, engines, counters)."""

    def __init__(self, s: CandleSettings | None = None, trade_partitions: int | None = None):
        """`trade_partitions`: the trade topic's partition count when known (default: asked from the broker)."""
        self.s = s = s or CandleSettings()
        self.metrics: Counter[str] = Counter()
        self.lock = asyncio.Lock()
        self._unconfirmed: list[Any] = []  # output sends not yet acknowledged (see _confirm_emitted)
        self.candle_timing = Timing(s.candle_grace_ms, s.candle_lateness_ms)
        self.mention_timing = Timing(s.candle_mention_grace_ms, s.candle_mention_lateness_ms)
        n_trade = trade_partitions or topic_partitions(s, s.candle_trade_topic)
        datadir = state_dir() / "candle-agent" / s.candle_app_id
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = app = faust.App(
            s.candle_app_id,
            broker=f"kafka://{s.bootstrap}",
            store=s.candle_store,
            topic_partitions=n_trade,
            topic_replication_factor=1,
            web_bind=s.host,
            web_host=s.host,
            web_port=s.candle_metrics_port,
            consumer_auto_offset_reset="earliest",
            processing_guarantee="at_least_once",
            producer_acks=-1,
            producer_linger_ms=5,
            # trades arrive as chunks of up to candle_batch_size records (bulk.py): a few chunks buffered suffice
            broker_max_poll_records=s.candle_batch_size,
            stream_buffer_maxsize=64,
            broker_commit_every=max(10_000, s.candle_batch_size),
            table_standby_replicas=0,
            # Faust creates its internal topics (the mention hits) just before it subscribes; when the broker's
            # metadata does not show a new topic yet, the group is formed without it ("Ignoring missing topic") and
            # the consumer only notices at its next metadata refresh (5 min by default: the demo waited that long
            # for its first mentions). A refresh every few seconds finds it and rebalances.
            consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
            broker_session_timeout=s.candle_session_timeout_s,
            broker_heartbeat_interval=max(1.0, s.candle_session_timeout_s / 10),
            web_enabled=True,
            datadir=str(datadir),
        )
        # codecs: each output's declared schema (schemas/), under the id registered for the topic actually used
        self.trade_codec = AvroValueDecoder(s)
        self.candle_codecs = {iv: AvroValueEncoder(t, s) for iv, t in s.candle_topics().items()}
        self.late_codec = AvroValueEncoder(s.candle_late_topic, s)
        self.dlq_codec = AvroValueEncoder(s.candle_dlq_topic, s)

        self.trades = app.topic(s.candle_trade_topic, **RAW)
        use_bulk_transport(app, {s.candle_trade_topic})
        self.out = {iv: app.topic(t, **RAW) for iv, t in s.candle_topics().items()}
        self.late_topic = app.topic(s.candle_late_topic, **RAW)
        self.dlq = app.topic(s.candle_dlq_topic, **RAW)
        self.candle_table = app.Table("candle-state", partitions=n_trade, **RAW_TABLE)
        self.max_future_ms = int(s.candle_max_future_skew_s * 1000)
        self.candles = PartitionEngines(self.candle_table, lambda: CandleEngine(self.candle_timing),
                                        self.max_future_ms, "candle")
        self.engine_sets = {s.candle_trade_topic: self.candles}

        app.agent(self.trades, name="build_candles")(self._build_candles)
        if s.candle_mentions:
            self._setup_mentions()
        app.timer(s.candle_timer_interval_s, name="advance_idle")(self._advance_idle)
        agent = self

        async def metrics(view: Any, request: Any) -> Any:  # becomes View.get: (view, request)
            return view.text(agent.metrics_text())

        async def health(view: Any, request: Any) -> Any:
            body = agent.health()
            return view.json(body, status=200 if body["ok"] else 503)

        app.page("/metrics")(metrics)
        app.page("/health")(health)
        self.started_ms = now_ms()
        app.on_partitions_revoked.connect(self._on_revoked)

    # -- candles ---------------------------------------------------------------------------------------------
    async def _build_candles(self, stream: Any) -> None:
        # the trade topic is consumed in chunks (bulk.py): one event = a run of records of one partition
        async for ev in stream.events():
            m = ev.message
            records = getattr(m, "records", None) or (m,)
            await self.trade_codec.ensure_schemas((r.value for r in records), self._registry_wait)
            async with self.lock:
                self._handle_trades(m.partition, records)
                self.candles.touch(m.partition, records[-1].offset)
                await self._confirm_emitted()
                self.candles.flush()
                if isinstance(m, ChunkMessage):
                    self.app.consumer.chunk_done(m)  # its offsets may be committed now (bulk.py)
            await self.app.producer.buffer.wait_until_ebb()

    def _handle_trades(self, partition: int, records: Any) -> None:
        """Records (anything with .offset, .key, .value: aiokafka records or Faust messages) of one partition."""
        eng, restored = self.candles.get(partition)
        self._emit_candles(restored)
        decode, add, emit = self.trade_codec.decode, eng.add, self._emit_candles  # type: ignore[attr-defined]
        counts: Counter[str] = Counter()
        now, skew = now_ms(), self.max_future_ms
        for r in records:
            raw = r.value
            try:
                if raw is None:
                    raise BadTrade("null value")
                rec = decode(raw)
                trade = trade_from_record(rec)
                if trade.ts - now > skew:  # a bad clock upstream must not drag event time forward
                    raise FutureTimestamp("trade_timestamp", trade.ts, now, skew)
            except Exception as exc:  # noqa: BLE001 - any undecodable or invalid record is dead-lettered
                counts["trades_future" if isinstance(exc, FutureTimestamp) else "trades_bad"] += 1
                self._dead_letter(dead_letter_reason(exc), raw, self.s.candle_trade_topic, r.key, partition,
                                  r.offset)
                continue
            status, emits = add(trade)
            counts[status] += 1
            if status == "late":
                self.late_topic.send_soon(key=trade.market.encode(), value=self.late_codec.encode(rec))
            if emits:
                emit(emits)
        for k, n in counts.items():
            self.metrics[TRADE_METRIC.get(k, k)] += n

    def _emit_candles(self, emits: list[dict[str, Any]]) -> None:
        ts = now_ms()
        for rec in emits:
            iv = rec["interval"]
            rec["emitted_at"] = ts
            key = topics.gold_key(rec["market"], rec["bucket_start"]).encode()
            self._unconfirmed.append(self.out[iv].send_soon(key=key, value=self.candle_codecs[iv].encode(rec)))
            self.metrics[f"candles_{iv}_r{min(rec['revision'], 1)}"] += 1

    async def _confirm_emitted(self) -> None:
        """Wait until the candles / mentions sent since the last state flush are acknowledged by the broker.

        Called before the state that records them as emitted (revision, closed) is written: output and state go
        to different topics with no ordering between them, so without the wait a crash could keep the state and
        lose the candle, which would then never be emitted again."""
        if self._unconfirmed:
            pending, self._unconfirmed = self._unconfirmed, []
            await asyncio.gather(*pending)

    def _registry_wait(self, schema_id: int, exc: Exception, delay_s: float) -> None:
        self.metrics["registry_waits"] += 1
        log.warning("registry_unavailable", schema_id=schema_id, error=str(exc)[:200], retry_in_s=delay_s,
                    hint="records wait (none is dead-lettered) until the schema registry answers: `coinpulse up`")

    def _dead_letter(self, reason: str, raw: bytes | None, source: str, key: bytes | None, partition: int,
                     offset: int) -> None:
        rec = dead_letter_record(SERVICE, reason, raw, source=source, key=key or None,
                                 context={"partition": partition, "offset": offset}, failed_at_ms=now_ms())
        self.dlq.send_soon(key=key or b"", value=self.dlq_codec.encode(rec))
        self.metrics["dead_letters"] += 1
        log.warning("dead_letter", reason=reason[:200], source=source, partition=partition, offset=offset)

    # -- mentions --------------------------------------------------------------------------------------------
    def _setup_mentions(self) -> None:
        s, app = self.s, self.app
        self.matcher = default_matcher()
        self.doc_codec = AvroValueDecoder(s)  # posts and comments (writer schema by id)
        self.mention_codec = AvroValueEncoder(s.candle_out_mention, s)
        self.mention_out = app.topic(s.candle_out_mention, **RAW)
        n = s.candle_mention_partitions
        self.hits = app.topic(f"{s.candle_app_id}-mention-hits", internal=True, partitions=n, **RAW)
        self.mention_table = app.Table("mention-state", partitions=n, **RAW_TABLE)
        self.mentions = PartitionEngines(self.mention_table, lambda: MentionEngine(self.mention_timing),
                                         self.max_future_ms, "mention")
        self.engine_sets[self.hits.get_topic_name()] = self.mentions
        docs = app.topic(s.candle_post_topic, s.candle_comment_topic, **RAW)
        app.agent(docs, name="match_mentions")(self._match_mentions)
        app.agent(self.hits, name="count_mentions")(self._count_mentions)

    async def _match_mentions(self, stream: Any) -> None:
        s = self.s
        async for events in stream.take_events(s.candle_batch_size, within=s.candle_batch_within_s):
            await self.doc_codec.ensure_schemas((ev.value for ev in events), self._registry_wait)
            latest = None
            for ev in events:
                m = ev.message
                try:
                    hits = self._doc_hits(m.topic, ev.value, m.offset)
                except Exception as exc:  # noqa: BLE001 - dead-letter, never crash on one record
                    self.metrics["docs_future" if isinstance(exc, FutureTimestamp) else "docs_bad"] += 1
                    self._dead_letter(dead_letter_reason(exc), ev.value, m.topic, ev.key, m.partition,
                                      m.offset)
                    continue
                self.metrics["docs"] += 1
                for ts, h in hits:
                    latest = ts if latest is None else max(latest, ts)
                    if h is not None:
                        self.hits.send_soon(key=h.market.encode(), value=json.dumps(h.to_json()).encode())
                        self.metrics["mention_hits"] += 1
            if latest is not None:  # documents without mentions still move event time, on every partition
                tick = json.dumps({"tick": latest}).encode()
                for p in range(s.candle_mention_partitions):
                    self.hits.send_soon(key=b"", value=tick, partition=p)
            await self.app.producer.buffer.wait_until_ebb()

    def _doc_hits(self, topic: str, raw: bytes | None, offset: int) -> list[tuple[int, DocHits | None]]:
        if raw is None:
            raise ValueError("null value")
        rec = self.doc_codec.decode(raw)
        d = post_document(rec) if topic == self.s.candle_post_topic else comment_document(rec)
        ts = d.ts
        check_not_future("created_at", ts, now_ms(), self.max_future_ms)  # would drag mention event time forward
        hits = document_hits(self.matcher, d, offset)
        return [(ts, h) for h in hits] or [(ts, None)]

    async def _count_mentions(self, stream: Any) -> None:
        s = self.s
        async for events in stream.take_events(s.candle_batch_size, within=s.candle_batch_within_s):
            async with self.lock:
                for ev in events:
                    p, off = ev.message.partition, ev.message.offset
                    eng, restored = self.mentions.get(p)
                    self._emit_mentions(restored)
                    try:
                        v = json.loads(ev.value)
                        if isinstance(v, dict):
                            self._emit_mentions(eng.advance(int(v["tick"])))
                        else:
                            status, emits = eng.add(DocHits.from_json(v))  # type: ignore[attr-defined]
                            self.metrics[f"mention_hits_{status}"] += 1
                            self._emit_mentions(emits)
                    except Exception as exc:  # noqa: BLE001
                        self._dead_letter(f"{type(exc).__name__}: {exc}", ev.value, self.hits.get_topic_name(),
                                          ev.key, p, off)
                    self.mentions.touch(p, off)
                await self._confirm_emitted()
                self.mentions.flush()
            await self.app.producer.buffer.wait_until_ebb()

    def _emit_mentions(self, emits: list[dict[str, Any]]) -> None:
        ts = now_ms()
        for rec in emits:
            rec["emitted_at"] = ts
            key = topics.gold_key(rec["market"], rec["bucket_start"]).encode()
            self._unconfirmed.append(self.mention_out.send_soon(key=key, value=self.mention_codec.encode(rec)))
            self.metrics["mentions_emitted"] += 1

    # -- timer, rebalance, metrics ---------------------------------------------------------------------------
    async def _advance_idle(self) -> None:
        app = self.app
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        assigned = app.consumer.assignment()
        for topic, engines in self.engine_sets.items():
            for tp in assigned:
                if tp.topic == topic and tp.partition not in engines.engines:
                    _, restored = engines.get(tp.partition)
                    self._emit_for(engines, restored)
            cands = engines.idle_candidates(now_ms(), self.s.candle_idle_after_ms)
            if not cands:
                continue
            async with self.lock:
                for p, (target, offset) in cands.items():
                    tp = TP(topic, p)
                    if offset < 0:
                        # nothing processed since the engine was loaded: everything from the committed offset
                        # on is still to come (the fetch position is no guide: fetched records may sit in
                        # the stream's buffer, and advancing now would close their buckets before they count)
                        offset = self._committed(tp) - 1
                    highwater = app.consumer.highwater(tp)
                    if highwater is None or offset + 1 < highwater:
                        continue  # unread input: not idle, just behind
                    eng = engines.engines.get(p)
                    if eng is not None:
                        self._emit_for(engines, eng.advance(target))
                await self._confirm_emitted()
                engines.flush()

    def _committed(self, tp: TP) -> int:
        """The partition's committed offset as the consumer last saw it (0 when none: Faust keeps 0 as None)."""
        return self.app.consumer._committed_offset.get(tp) or 0

    def _emit_for(self, engines: PartitionEngines, emits: list[dict[str, Any]]) -> None:
        if engines is self.candles:
            self._emit_candles(emits)
        else:
            self._emit_mentions(emits)

    async def _on_revoked(self, sender: Any, revoked: set[TP], **_: Any) -> None:
        for topic, engines in self.engine_sets.items():
            engines.revoke({tp.partition for tp in revoked if tp.topic == topic})

    def _assigned(self) -> list[TP]:
        try:
            return sorted(self.app.consumer.assignment())
        except Exception:  # noqa: BLE001 - no consumer yet (starting up)
            return []

    def health(self) -> dict[str, Any]:
        """What `/health` answers (module doc): ok, the reason when not, assignment, recovery, watermark ages."""
        app, s, now = self.app, self.s, now_ms()
        assigned = self._assigned()
        try:
            recovered = app.tables.recovery.completed.is_set()
        except Exception:  # noqa: BLE001 - not started
            recovered = False
        by_topic: dict[str, list[int]] = {}
        for tp in assigned:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        problems = []
        if not by_topic.get(s.candle_trade_topic):
            problems.append(f"no partition of {s.candle_trade_topic} assigned: not (yet) in the consumer group "
                            "(is Kafka up?), or more workers than partitions")
        if app.rebalancing:
            problems.append("rebalancing")
        if not recovered:
            problems.append("table recovery not complete")
        ages: dict[str, float | None] = {}
        for name, engines in (("candle", self.candles), ("mention", getattr(self, "mentions", None))):
            if engines is None:
                continue
            marks = [e.watermark for e in engines.engines.values() if e.watermark is not None]
            ages[name] = round((now - max(marks)) / 1000, 1) if marks else None
        body: dict[str, Any] = {
            "ok": not problems, "app_id": s.candle_app_id, "uptime_s": round((now - self.started_ms) / 1000, 1),
            "assigned": by_topic, "rebalancing": bool(app.rebalancing), "recovered": recovered,
            "watermark_age_s": ages,
            "counts": {k: self.metrics[k] for k in ("trades_ok", "dead_letters", "mentions_emitted")},
        }
        if problems:
            body["reason"] = "; ".join(problems)
        return body

    def metrics_text(self) -> str:
        lines = [f"coinpulse_candle_{k}_total {v}" for k, v in sorted(self.metrics.items())]
        # fetches that skipped offsets, each read again from the gap (bulk.py)
        lines.append(f"coinpulse_candle_gap_seeks_total {getattr(getattr(self.app, 'consumer', None), 'gap_seeks', 0)}")
        assigned = self._assigned()
        lines += [f'coinpulse_candle_assigned{{topic="{tp.topic}",partition="{tp.partition}"}} 1' for tp in assigned]
        for name, engines in (("candle", self.candles), ("mention", getattr(self, "mentions", None))):
            if engines is None:
                continue
            for p, eng in sorted(engines.engines.items()):
                if eng.watermark is not None:
                    lines.append(f'coinpulse_{name}_event_time_ms{{partition="{p}"}} {eng.watermark}')
                lines.append(f'coinpulse_{name}_open_buckets{{partition="{p}"}} {len(eng.buckets)}')  # type: ignore[attr-defined]
            for p, ahead in sorted(engines.ahead_ms.items()):  # restored event time ahead of the wall clock
                lines.append(f'coinpulse_{name}_watermark_ahead_ms{{partition="{p}"}} {ahead}')
        return "\n".join(lines) + "\n"
