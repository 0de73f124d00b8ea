"""The Faust app: agents wire topics and tables to the plain rules (engine.py, mentions.py).

Agents (verb_noun):
- `build_candles`: upbit.trade → candle.1m / candle.5m / candle.1h, late trades → candle.late;
- `match_mentions`: dc.post + dc.comment → internal market-keyed hits topic (plus event-time ticks);
- `count_mentions`: hits → mention.1m.
Values are Avro (Confluent wire format) through coinpulse_common.wire (fastavro; each output is
written with exactly its declared schema's registered id, never another's); Faust
only moves bytes. Trades are consumed in chunks of records (bulk.py), one Faust event per partition and fetch.
A record that cannot be decoded or validated goes to dlq.candle-agent with the reason.
Every output's schema id is looked up before any input is applied (`_outputs_ready`): the engines settle what they
emit as they apply input (a closed bucket is marked emitted), so an output that could not be encoded then (the
registry down at the first close of a 5-minute bucket after a start) was never emitted at all, and the agent task
crashed. While the registry cannot answer, input waits. An unexpected error while a chunk is applied drops that
partition's engine (it is loaded again from its last flushed state) and reads the input again from the committed
offsets (`_reread`), instead of going on with an engine that applied half a chunk.
A timer advances event time for partitions that are idle and fully read, so the last candles close.

HTTP (Faust's web server on `COINPULSE_CANDLE_METRICS_PORT`; Faust starts it once table recovery is done):
- `GET /metrics`: Prometheus text (counters, assigned partitions, event time per partition);
- `GET /health`: JSON, 200 when the worker holds partitions of the trade topic, is not rebalancing and has
  recovered its tables; 503 with a `reason` otherwise. It reports the assignment and the event-time (watermark)
  age per engine; an old watermark alone is not unhealthy (a quiet market has no trades to move it). `inputs`
  says per input partition why its last bucket is (not yet) closing: the last offset processed, the committed
  offset, the highwater, the event time and the seconds since the last input (`idle`: fully read and quiet, so
  the timer advances event time; `behind`: unread input; `no_event_time`: no input yet) and `timer`, what the idle
  timer last did to it. `busy` gives the age of the idle timer's last run past its rebalance/recovery guard, what
  held it back last (`held`) and whether the engines' lock is held (a stuck await or a worker stuck rebalancing
  shows here). `fetch` gives, per partition of every input topic, the committed offset, the highwater and the
  fetch state (`active`, `paused`, `buffered`; `inactive` is a partition Faust stopped fetching, which the idle
  timer makes active again).
- `GET /debug/tasks`: the stack of every asyncio task (text), for a worker that has stopped making progress.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
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
STALL_RESEEK_S = 30.0  # a partition with unread input and no record delivered for this long is read again
EXIT_DELIVERY_FAILED = 75  # EX_TEMPFAIL: start the worker again once Kafka is back


class DeliveryGuard(faust.Sensor):
    """Ends the worker at the first record the producer gave up on (after `candle_delivery_timeout_s`).

    Faust only logs a failed send. The candles and table state it carried would be gone, and the next commit would
    move past their input, so the worker exits at once instead: no later flush or commit runs, and the restart
    re-reads from the last commit and the state of that commit, as after a kill -9. The producer retries for a week
    by default, so this is the end of a very long outage, not of a short one."""

    def __init__(self, exit_process: Callable[[int], Any] = os._exit, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exit = exit_process

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        log.error("delivery_failed", error=f"{type(exc).__name__}: {exc}"[:300], exit_code=EXIT_DELIVERY_FAILED,
                  hint="Kafka did not take a record within COINPULSE_CANDLE_DELIVERY_TIMEOUT_S; the worker exits "
                  "without committing. Start it again once the broker is up (`coinpulse up`): it resumes from its "
                  "last commit and loses nothing")
        sys.stderr.flush()
        sys.stdout.flush()
        self._exit(EXIT_DELIVERY_FAILED)


def topic_partitions(s: CandleSettings, topic: str) -> int:
    md = AdminClient({"bootstrap.servers": s.bootstrap}).list_topics(topic, timeout=10)  # as coinpulse_common.kafka.admin
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise RuntimeError(f"input topic {topic!r} does not exist (run `coinpulse up`): {t and t.error}")
    return len(t.partitions)


def await_chain(coro: Any, limit: int = 40) -> list[str]:
    """Where a coroutine waits: its frame, then the frame of what it awaits, down to the innermost (a future, a
    compiled awaitable). asyncio's own `print_stack` shows only a task's outer frame and fails on frames without a
    line number (Cython's, uvloop's): CI's stuck agent answered /debug/tasks with a 500."""
    out = []
    while coro is not None and len(out) < limit:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            out.append(f"  awaiting {type(coro).__name__}: {coro!r:.200}")
            break
        code = frame.f_code
        out.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return out


def task_stacks() -> str:
    """Every asyncio task of the running loop with what it awaits, outermost first (`/debug/tasks`)."""
    out = io.StringIO()
    for t in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        out.write(f"--- {t.get_name()} {t.get_coro()!r:.200}\n")
        out.write("\n".join(await_chain(t.get_coro())) + "\n")
    return out.getvalue()


def now_ms() -> int:
    return int(time.time() * 1000)


class CandleAgent:
    """Builds the Faust app and holds what the agents share (codecs, engines, counters)."""

    def __init__(self, s: CandleSettings | None = None, trade_partitions: int | None = None):
        """`trade_partitions`: the trade topic's partition count when known (default: asked from the broker)."""
        self.s = s = s or CandleSettings()
        self.metrics: Counter[str] = Counter()
        self.lock = asyncio.Lock()
        self.timer_ran_ms: int | None = None  # the idle timer's last run (health `busy`)
        self.timer_held: str | None = None  # why the idle timer's last call did nothing (health `busy`)
        self.timer_verdicts: dict[TP, str] = {}  # per input partition, what the idle timer last did (health inputs)
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
            producer_request_timeout=s.candle_delivery_timeout_s,  # aiokafka: how long a batch may wait for Kafka
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
        app.sensors.add(DeliveryGuard())
        # codecs: each output's declared schema (schemas/), under the id registered for the topic actually used
        self.trade_codec = AvroValueDecoder(s)
        self.candle_codecs = {iv: AvroValueEncoder(t, s) for iv, t in s.candle_topics().items()}
        self.late_codec = AvroValueEncoder(s.candle_late_topic, s)
        self.dlq_codec = AvroValueEncoder(s.candle_dlq_topic, s)
        self.encoders = [*self.candle_codecs.values(), self.late_codec, self.dlq_codec]  # _outputs_ready

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
        self.input_topics = {s.candle_trade_topic}  # every topic an agent reads (_reactivate_lost)

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

        async def tasks(view: Any, request: Any) -> Any:
            return view.text(task_stacks())

        app.page("/metrics")(metrics)
        app.page("/health")(health)
        app.page("/debug/tasks")(tasks)
        self.started_ms = now_ms()
        app.on_partitions_revoked.connect(self._on_revoked)

    # -- candles ---------------------------------------------------------------------------------------------
    async def _build_candles(self, stream: Any) -> None:
        # the trade topic is consumed in chunks (bulk.py): one event = a run of records of one partition
        async for ev in stream.events():
            m = ev.message
            records = getattr(m, "records", None) or (m,)
            await self.trade_codec.ensure_schemas((r.value for r in records), self._registry_wait)
            await self._outputs_ready()
            async with self.lock:
                try:
                    self._handle_trades(m.partition, records)
                except Exception as exc:  # noqa: BLE001 - a bug must not leave a half-applied engine (module doc)
                    await self._reread(self.candles, m.partition, exc)
                    continue
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

    async def _outputs_ready(self) -> None:
        """Wait until every output encoder knows its schema id (module doc); a no-op once they all do."""
        for enc in self.encoders:
            await enc.ensure_resolved(self._registry_wait)

    async def _reread(self, engines: PartitionEngines, partition: int, exc: Exception) -> None:
        """After an unexpected error while input of `partition` was applied: its engine is dropped (loaded again
        from the table, the state of its last flush) and every partition is read again from its committed offset
        (records already applied are recognised again)."""
        self.metrics["processing_failures"] += 1
        log.error("processing_failed", partition=partition, error=f"{type(exc).__name__}: {exc}"[:300],
                  hint="the partition's engine is reloaded from its last flushed state and its input read again from "
                  "the committed offset; if this repeats, report it with this log line")
        engines.revoke({partition})
        await self.app.consumer.perform_seek()

    def _registry_wait(self, schema_id: int | str, exc: Exception, delay_s: float) -> None:
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
        self.encoders.append(self.mention_codec)
        self.mention_out = app.topic(s.candle_out_mention, **RAW)
        n = s.candle_mention_partitions
        self.hits = app.topic(f"{s.candle_app_id}-mention-hits", internal=True, partitions=n, **RAW)
        self.mention_table = app.Table("mention-state", partitions=n, **RAW_TABLE)
        self.mentions = PartitionEngines(self.mention_table, lambda: MentionEngine(self.mention_timing),
                                         self.max_future_ms, "mention")
        self.engine_sets[self.hits.get_topic_name()] = self.mentions
        self.input_topics |= {self.hits.get_topic_name(), s.candle_post_topic, s.candle_comment_topic}
        docs = app.topic(s.candle_post_topic, s.candle_comment_topic, **RAW)
        app.agent(docs, name="match_mentions")(self._match_mentions)
        app.agent(self.hits, name="count_mentions")(self._count_mentions)

    async def _match_mentions(self, stream: Any) -> None:
        s = self.s
        async for events in stream.take_events(s.candle_batch_size, within=s.candle_batch_within_s):
            await self.doc_codec.ensure_schemas((ev.value for ev in events), self._registry_wait)
            await self._outputs_ready()
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
            await self._outputs_ready()
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
            self.timer_held = "rebalancing" if app.rebalancing else "table recovery not complete"
            return
        self.timer_held = None
        self.timer_ran_ms = now_ms()  # past the guard: health `busy` shows a worker stuck rebalancing or recovering
        await self._outputs_ready()
        assigned = app.consumer.assignment()
        self._reactivate_lost(assigned)
        for topic, engines in self.engine_sets.items():
            for tp in assigned:
                if tp.topic == topic and tp.partition not in engines.engines:
                    _, restored = engines.get(tp.partition)
                    self._emit_for(engines, restored)
            await self._reseek_stalled(topic, engines, assigned)
            cands = engines.idle_candidates(now_ms(), self.s.candle_idle_after_ms)
            if not cands:
                continue
            async with self.lock:
                for p, (target, offset) in cands.items():
                    tp = TP(topic, p)
                    if self._unread(tp, offset)[1]:
                        self.timer_verdicts[tp] = f"behind at {now_ms()}"
                        continue  # unread input: not idle, just behind
                    eng = engines.engines.get(p)
                    if eng is not None:
                        emits = eng.advance(target)
                        self.timer_verdicts[tp] = f"advanced to {target} at {now_ms()}: {len(emits)} emitted"
                        self._emit_for(engines, emits)
                await self._confirm_emitted()
                engines.flush()

    def _reactivate_lost(self, assigned: Any) -> None:
        """Faust fetches only its `active` partitions: the assignment less the paused ones (rebalance, recovery) and
        the buffered ones (a full stream queue, until it drains). An input partition in none of these sets is
        fetched by the Kafka client (its highwater moves) but never handed to the agent; it is made active again,
        logged and counted (`partitions_reactivated`)."""
        c = self.app.consumer
        lost = {tp for tp in assigned if tp.topic in self.input_topics and self._fetch_state(tp) == "inactive"}
        if lost:
            self.metrics["partitions_reactivated"] += len(lost)
            log.warning("input_partitions_inactive", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in lost),
                        hint="assigned, not paused, not buffered, yet not fetched: made active again")
            c.resume_partitions(lost)

    async def _reseek_stalled(self, topic: str, engines: PartitionEngines, assigned: Any) -> None:
        """Read a partition again from its committed offset when it has unread input but no record of it has been
        delivered for STALL_RESEEK_S (CI: a worker restarted after a kill -9 got no record of the trade topic while
        its fetcher knew the highwater, so the minute open at the kill never closed). Records already processed are
        recognised again (at-least-once), so a seek costs only the re-read."""
        now, consumer = now_ms(), self.app.consumer
        for tp in assigned:
            if tp.topic != topic or tp.partition not in engines.anchors:
                continue
            wall, _, offset = engines.anchors[tp.partition]
            highwater, unread = self._unread(tp, offset)
            if highwater is None or not unread or now - wall < STALL_RESEEK_S * 1000:
                continue
            self.metrics["input_stall_reseeks"] += 1
            log.warning("input_stalled", topic=tp.topic, partition=tp.partition, processed_offset=offset,
                        committed=self._committed(tp), highwater=highwater, quiet_s=round((now - wall) / 1000, 1),
                        paused=tp in consumer._paused_partitions, buffered=tp in consumer._buffered_partitions,
                        active=tp in consumer._get_active_partitions(), client=self._client_state(tp),
                        hint="no record delivered while input is unread: reading it again from the committed offset")
            consumer._buffered_partitions.discard(tp)
            consumer.resume_partitions({tp})
            engines.anchors[tp.partition] = (now, engines.anchors[tp.partition][1], offset)  # quiet clock anew
            await consumer.perform_seek()
            return

    def _client_state(self, tp: TP) -> str:
        """What the Kafka client (aiokafka) itself holds for `tp`: paused, fetch position (stall diagnosis)."""
        try:
            client = self.app.consumer._thread._ensure_consumer()
            state = client._subscription.subscription.assignment.state_value(tp)
            return f"paused={tp in client.paused()} position={getattr(state, '_position', None)}"
        except Exception as exc:  # noqa: BLE001 - diagnosis only
            return f"unknown ({type(exc).__name__})"

    def _unread(self, tp: TP, offset: int) -> tuple[int | None, bool]:
        """(highwater, whether `tp` has input beyond `offset`, the last offset processed, -1 for none yet).

        With nothing processed since the engine was loaded, everything from the committed offset on is still to
        come (the fetch position is no guide: fetched records may sit in the stream's buffer, and advancing now
        would close their buckets before they count). An unknown highwater counts as unread input."""
        read_to = offset if offset >= 0 else self._committed(tp) - 1
        highwater = self.app.consumer.highwater(tp)
        return highwater, highwater is None or read_to + 1 < highwater

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
            "inputs": self._inputs(assigned, now),
            "fetch": self._fetch_states(assigned),
            "busy": {"timer_ran_s_ago": None if self.timer_ran_ms is None else round((now - self.timer_ran_ms) / 1000, 1),
                     "lock_held": self.lock.locked(), "held": self.timer_held},
        }
        if problems:
            body["reason"] = "; ".join(problems)
        return body

    def _fetch_states(self, assigned: list[TP]) -> dict[str, dict[str, Any]]:
        """Per partition of every input topic: committed offset, highwater, and which of Faust's fetch sets holds
        it (`active`; `paused`: rebalance or recovery; `buffered`: its stream queue is full; `inactive`: none)."""
        out: dict[str, dict[str, Any]] = {}
        try:
            for tp in assigned:
                if tp.topic in self.input_topics:
                    out[f"{tp.topic}/{tp.partition}"] = {"committed": self._committed(tp),
                                                         "highwater": self.app.consumer.highwater(tp),
                                                         "state": self._fetch_state(tp)}
        except Exception:  # noqa: BLE001 - no consumer yet
            pass
        return out

    def _fetch_state(self, tp: TP) -> str:
        """Which of Faust's fetch sets holds `tp`: paused, buffered, active, or none (`inactive`)."""
        c = self.app.consumer
        if tp in c._paused_partitions:
            return "paused"
        if tp in c._buffered_partitions:
            return "buffered"
        return "active" if tp in c._get_active_partitions() else "inactive"

    def _inputs(self, assigned: list[TP], now: int) -> dict[str, dict[int, dict[str, Any]]]:
        """Per input partition: where reading stands and what the idle timer makes of it (module doc)."""
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for topic, engines in self.engine_sets.items():
            for tp in assigned:
                if tp.topic != topic:
                    continue
                wall, wm, offset = engines.anchors.get(tp.partition, (None, None, -1))
                try:
                    highwater, unread = self._unread(tp, offset)  # the idle timer's own test
                except Exception:  # noqa: BLE001 - no consumer yet
                    highwater, unread = None, True
                eng = engines.engines.get(tp.partition)
                state = "no_event_time" if wm is None else "behind" if unread else "idle"
                out.setdefault(topic, {})[tp.partition] = {
                    "processed_offset": offset if offset >= 0 else None, "committed": self._committed(tp),
                    "highwater": highwater, "event_time_ms": eng.watermark if eng is not None else None, "state": state,
                    "quiet_s": None if wall is None else round((now - wall) / 1000, 1),
                    "timer": self.timer_verdicts.get(tp)}
        return out

    def metrics_text(self) -> str:
        lines = [f"coinpulse_candle_{k}_total {v}" for k, v in sorted(self.metrics.items())]
        # fetches that skipped offsets, each read again from the gap (bulk.py)
        consumer = getattr(self.app, "consumer", None)
        lines.append(f"coinpulse_candle_gap_seeks_total {getattr(consumer, 'gap_seeks', 0)}")
        # records Faust's fetch loop would have dropped below a stale read offset (bulk.py)
        lines.append(f"coinpulse_candle_stale_read_offsets_total {getattr(consumer, 'stale_read_offsets', 0)}")
        # recovery seeks run with the flow stopped, so the stream queue clear after them drops nothing (bulk.py)
        lines.append(f"coinpulse_candle_recovery_flow_holds_total {getattr(consumer, 'recovery_flow_holds', 0)}")
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
