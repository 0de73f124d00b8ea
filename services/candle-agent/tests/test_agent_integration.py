"""The Faust agent against the running stack (Kafka 4.3 through faust-streaming/aiokafka, Apicurio for Avro).

Each test uses its own topics and app id. Trades go to explicit partitions so the reference knows which markets
share a partition's event time."""

from __future__ import annotations

import time

import httpx
import pytest
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.trades import Trade
from coinpulse_common import topics
from coinpulse_common.avro import TopicCodec
from coinpulse_common.kafka import producer
from coinpulse_testing import synthetic
from coinpulse_testing.reference import accepted_trades, reference_candles
from coinpulse_testing.sandbox import TopicReader, as_ms, normalise, wait_for_candles
from confluent_kafka import Producer

pytestmark = pytest.mark.integration

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-DOGE"]  # DOGE shares partition 0 with BTC
BASE = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000 + 600_000


def partition_of(market: str) -> int:
    return MARKETS.index(market) % 3


def produce_trades(s, topic: str, order: list[Trade]) -> None:
    codec = TopicCodec(topic, s, schema_topic=topics.UPBIT_TRADE)
    p = producer(s)
    for i, t in enumerate(order):
        p.produce(topic, key=t.market.encode(), value=codec.encode(synthetic.trade_record(t)),
                  partition=partition_of(t.market))
        if i % 10_000 == 0:
            p.poll(0)
    p.flush(30)


def expected_1m(order: list[Trade], timing: Timing) -> tuple[dict[bytes, dict], list[Trade]]:
    events = [("trade", partition_of(t.market), t) for t in order]
    unique, late, _ = accepted_trades(events, timing)
    ref = reference_candles(unique, intervals=("1m",))
    return {topics.gold_key(m, b).encode(): c for (_, m, b), c in ref.items()}, late


def test_candles_equal_reference_with_duplicates_reordering_late_and_bad_records(stack, topic_set, agents):
    timing = Timing(2_000, 120_000)
    trades = synthetic.trades(MARKETS[:3], BASE, 8 * 60_000, 300, seed=11)
    trades += synthetic.trades(["KRW-DOGE"], BASE, 3 * 60_000, 50, seed=12)  # goes idle; partition-mate trades on
    order = synthetic.arrival_order(trades, seed=13, dup_rate=0.03, delays=(1_500, 20_000, 400_000),
                                    delay_rate=0.05)
    want, late = expected_1m(order, timing)
    assert late, "the scenario must contain trades beyond the lateness"
    produce_trades(stack, topic_set.topic("trade"), order)
    p = producer(stack)
    p.produce(topic_set.topic("trade"), key=b"KRW-BTC", value=b"\x00not avro", partition=0)
    p.flush(10)

    a = agents(grace_ms=timing.grace_ms, lateness_ms=timing.lateness_ms, idle_after_ms=1_000, mentions="false")
    proc = a.start()
    reader = TopicReader(stack, topic_set.topic("1m"), topics.CANDLE_1M, 3)
    wait_for_candles(reader, want, 400, alive=lambda: proc.poll() is None)
    assert set(reader.last) == set(want)
    # each key: revision 0 first, then +1 per correction
    revs: dict[tuple, list[int]] = {}
    for v in reader.all:
        revs.setdefault((v["market"], as_ms(v["bucket_start"])), []).append(v["revision"])
    assert all(r == list(range(len(r))) for r in revs.values())
    assert any(len(r) > 1 for r in revs.values()), "late trades within the lateness must revise candles"

    late_reader = TopicReader(stack, topic_set.topic("late"), topics.CANDLE_LATE, 1)
    dlq = TopicReader(stack, topic_set.topic("dlq"), topics.dlq("candle-agent"), 1)
    deadline = time.monotonic() + 400
    while (len(late_reader.all) < len(late) or not dlq.all) and time.monotonic() < deadline:
        late_reader.poll()
        dlq.poll()
    assert sorted((r["market"], r["sequential_id"]) for r in late_reader.all) == sorted(
        (t.market, t.seq) for t in late)
    assert len(dlq.all) == 1 and "not found" in dlq.all[0]["reason"]
    assert dlq.all[0]["payload"] == b"\x00not avro" and dlq.all[0]["source"] == topic_set.topic("trade")


def test_kill_9_and_restart_gives_identical_final_candles(stack, topic_set, agents):
    timing = Timing(2_000, 600_000)
    trades = synthetic.trades(MARKETS, BASE, 20 * 60_000, 6_000, seed=21)
    order = synthetic.arrival_order(trades, seed=22, dup_rate=0.02, delays=(1_000, 30_000), delay_rate=0.03)
    want, _ = expected_1m(order, timing)
    produce_trades(stack, topic_set.topic("trade"), order)

    # an eager idle timer: after a restart the fetcher runs ahead of the agent, and the timer must not take
    # fetched-but-unprocessed input for idleness (it would close buckets early and turn their trades into revisions)
    a = agents(grace_ms=timing.grace_ms, lateness_ms=timing.lateness_ms, idle_after_ms=50, timer_interval_s=0.05,
               mentions="false", batch_events=500, session_timeout_s=6)
    reader = TopicReader(stack, topic_set.topic("1m"), topics.CANDLE_1M, 3)
    for needed in (3, 25):  # kill -9 twice, mid-stream
        proc = a.start()
        deadline = time.monotonic() + 300
        while len(reader.last) < needed:
            reader.poll()
            assert proc.poll() is None, a.log()[-3000:]
            assert time.monotonic() < deadline, "agent made no progress"
        a.kill9(proc)
    assert len(reader.last) < len(want), "the kills must land before the stream is done"
    proc = a.start()
    wait_for_candles(reader, want, 480, alive=lambda: proc.poll() is None)
    assert set(reader.last) == set(want)
    # the uninterrupted answer also fixes the revisions: a replay must not invent corrections
    straight = {}
    from coinpulse_candle_agent.engine import CandleEngine

    engines = {p: CandleEngine(timing) for p in range(3)}
    for t in order:
        for rec in engines[partition_of(t.market)].add(t).emits:
            if rec["interval"] == "1m":
                straight[topics.gold_key(rec["market"], rec["bucket_start"]).encode()] = rec["revision"]
    for k, v in reader.last.items():
        assert v["revision"] == straight.get(k, 0), k


def test_mentions_per_market_minute_from_posts_and_comments(stack, topic_set, agents):
    t0 = BASE + 120_000
    posts = TopicCodec(topic_set.topic("post"), stack, schema_topic=topics.DC_POST)
    comments = TopicCodec(topic_set.topic("comment"), stack, schema_topic=topics.DC_COMMENT)
    p = producer(stack)

    def post(no: int, ts: int, title: str, body: str | None):
        rec = {"gallery": "bitcoins_new1", "post_no": no, "title": title, "body": body, "head": None,
               "author_hash": "a", "ip_hash": None, "is_member": False, "created_at": ts, "views": 0,
               "recommend": 0, "reply_count": 0, "deleted": False, "url": None, "fetched_at": ts}
        p.produce(topic_set.topic("post"), key=f"bitcoins_new1/{no}".encode(), value=posts.encode(rec))

    def comment(no: int, post_no: int, ts: int, text: str):
        rec = {"gallery": "bitcoins_new1", "post_no": post_no, "comment_no": no, "parent_no": None,
               "author_hash": "b", "ip_hash": None, "kind": "text", "text": text, "created_at": ts,
               "deleted": False, "fetched_at": ts}
        p.produce(topic_set.topic("comment"), key=f"bitcoins_new1/{post_no}/{no}".encode(),
                  value=comments.encode(rec))

    post(1, t0 + 1_000, "비트코인 떡상 가즈아", None)
    post(1, t0 + 1_000, "비트코인 떡상 가즈아", "비트도 이더도 간다")  # view page fetched: replaces the first
    post(2, t0 + 2_000, "트리플 악셀", "리플렉스")  # no coin
    comment(1, 1, t0 + 3_000, "BTC 손절함")
    comment(2, 1, t0 + 65_000, "리플이 물렸다")
    p.flush(10)
    # a crawl cycle aborted by a crash (crawl-dc writes one transaction per cycle): never counted
    tx = Producer({"bootstrap.servers": stack.bootstrap, "transactional.id": f"it-abort-{topic_set.topic('post')}"})
    tx.init_transactions(30)
    tx.begin_transaction()
    tx.produce(topic_set.topic("post"), key=b"bitcoins_new1/9", value=posts.encode({
        "gallery": "bitcoins_new1", "post_no": 9, "title": "도지 비트코인", "body": None, "head": None, "author_hash": "a",
        "ip_hash": None, "is_member": False, "created_at": t0 + 4_000, "views": 0, "recommend": 0, "reply_count": 0,
        "deleted": False, "url": None, "fetched_at": t0 + 4_000}))
    assert tx.flush(30) == 0  # in the log, then aborted
    tx.abort_transaction(30)
    post(3, t0 + 200_000, "later", "도지")  # moves event time past both minutes
    p.produce(topic_set.topic("comment"), key=b"x", value=b"junk")
    p.flush(10)

    a = agents(mention_grace_ms=1_000, mention_lateness_ms=600_000, idle_after_ms=1_000, mention_partitions=3)
    proc = a.start()
    reader = TopicReader(stack, topic_set.topic("mention"), topics.MENTION_1M, 3)
    want = {
        topics.gold_key("KRW-BTC", t0): {"mentions": 3, "posts": 1, "comments": 1, "positive": 2, "negative": 1},
        topics.gold_key("KRW-ETH", t0): {"mentions": 1, "posts": 1, "comments": 0, "positive": 2, "negative": 0},
        topics.gold_key("KRW-XRP", t0 + 60_000): {"mentions": 1, "posts": 0, "comments": 1, "positive": 0,
                                                  "negative": 1},
    }
    fields = ("mentions", "posts", "comments", "positive", "negative")
    deadline = time.monotonic() + 300
    while True:
        reader.poll()
        got = {k.decode(): {f: v[f] for f in fields} for k, v in reader.last.items()}
        if all(got.get(k) == v for k, v in want.items()):
            break
        assert proc.poll() is None, a.log()[-3000:]
        assert time.monotonic() < deadline, f"mentions so far: {got}"
    btc = reader.last[topics.gold_key("KRW-BTC", t0).encode()]
    assert btc["sentiment"] == pytest.approx(1 / 3)
    assert not any(k.startswith(b"KRW-XRP|" + str(t0).encode()) for k in reader.last)  # 트리플/리플렉스
    assert topics.gold_key("KRW-DOGE", t0).encode() not in reader.last  # only in the aborted transaction
    reader.close()


def test_fast_wire_decoder_reads_what_topic_codec_writes(stack, topic_set):
    from coinpulse_candle_agent.wire import AvroValueDecoder
    from coinpulse_common.wire import WireFormatError

    codec = TopicCodec(topic_set.topic("trade"), stack, schema_topic=topics.UPBIT_TRADE)
    t = Trade("KRW-BTC", 17_000_000_000_000_123, BASE + 1_234, 101.5, 0.25, False)
    data = codec.encode(synthetic.trade_record(t, received_at=BASE + 2_000))
    fast = AvroValueDecoder(stack).decode(data)
    slow = codec.decode(data)
    assert fast["trade_timestamp"] == BASE + 1_234 == as_ms(slow["trade_timestamp"])
    assert {k: v for k, v in fast.items() if k not in ("trade_timestamp", "received_at")} == {
        k: v for k, v in slow.items() if k not in ("trade_timestamp", "received_at")}
    with pytest.raises(WireFormatError):
        AvroValueDecoder(stack).decode(data + b"\x00")


def test_two_workers_sharing_partitions_give_the_candles_of_one(stack, topic_set, agents):
    timing = Timing(2_000, 600_000)
    trades = synthetic.trades(MARKETS, BASE, 15 * 60_000, 3_000, seed=31)
    order = synthetic.arrival_order(trades, seed=32, dup_rate=0.02, delays=(1_000, 30_000), delay_rate=0.03)
    want, _ = expected_1m(order, timing)
    a = agents(grace_ms=timing.grace_ms, lateness_ms=timing.lateness_ms, idle_after_ms=1_000, mentions="false",
               batch_events=500, session_timeout_s=6)
    first = a.start()
    reader = TopicReader(stack, topic_set.topic("1m"), topics.CANDLE_1M, 3)
    half = len(order) // 2
    produce_trades(stack, topic_set.topic("trade"), order[:half])
    deadline = time.monotonic() + 300
    while len(reader.last) < 5:  # the first worker is running
        reader.poll()
        assert first.poll() is None and time.monotonic() < deadline, a.log()[-3000:]
    second = a.start()  # joins: partitions and their state move between the workers
    produce_trades(stack, topic_set.topic("trade"), order[half:])
    wait_for_candles(reader, want, 480, alive=lambda: first.poll() is None and second.poll() is None)
    assert set(reader.last) == set(want)
    reader.close()

    trade_topic = topic_set.topic("trade")

    def owned(proc) -> set[str]:
        """Partitions of the trade topic the worker's consumer holds now (none while its web server is not up yet:
        on a busy machine the second worker may still be starting when the first has done all the work)."""
        assert proc.poll() is None, a.log()[-3000:]
        try:
            text = httpx.get(proc.metrics_url, timeout=5).text
        except httpx.TransportError:
            return set()
        return {line.split('partition="')[1].split('"')[0] for line in text.splitlines()
                if line.startswith(f'coinpulse_candle_assigned{{topic="{trade_topic}"')}

    def split() -> bool:
        a, b = owned(first), owned(second)
        return bool(a) and bool(b) and a | b == {"0", "1", "2"} and not a & b

    deadline = time.monotonic() + 400  # a rebalance under load may repeat; wait for the settled assignment
    while not split():  # both workers hold partitions of the trade topic, each partition exactly one
        assert time.monotonic() < deadline, (owned(first), owned(second), a.log()[-3000:])
        time.sleep(0.5)


def test_wire_encoder_writes_what_topic_codec_reads(stack, topic_set):
    from coinpulse_candle_agent.wire import AvroValueEncoder
    from coinpulse_common.wire import RegistryError

    topic = topic_set.topic("1m")
    rec = {"market": "KRW-BTC", "interval": "1m", "bucket_start": BASE, "open": 1.0, "high": 2.0, "low": 0.5,
           "close": 1.5, "volume": 3.0, "quote_volume": 4.5, "vwap": 1.5, "trade_count": 3, "buy_volume": 1.0,
           "sell_volume": 2.0, "first_trade_at": BASE + 1, "last_trade_at": BASE + 59_000, "revision": 2,
           "emitted_at": BASE + 70_000}
    data = AvroValueEncoder(topic, stack, stem="candle").encode(rec)  # plain Settings: the stem named
    assert data == TopicCodec(topic, stack, schema_topic=topics.CANDLE_1M).encode(rec)
    assert normalise(TopicCodec(topic, stack, schema_topic=topics.CANDLE_1M).decode(data)) == rec
    with pytest.raises(RegistryError, match="not found"):
        AvroValueEncoder(f"{topic}.unregistered", stack, 1.0, "candle").encode(rec)


@pytest.mark.slow  # tens of seconds: `make test-fast` leaves it to `make test`
def test_offsets_are_committed_up_to_the_end_of_the_input(stack, topic_set, agents):
    """Trades are consumed in chunks whose earlier offsets are an acked gap: the group still commits every one."""
    from coinpulse_common.kafka import consumer
    from confluent_kafka import TopicPartition

    trades = synthetic.trades(MARKETS, BASE, 5 * 60_000, 2_000, seed=41)
    produce_trades(stack, topic_set.topic("trade"), trades)
    a = agents(mentions="false", batch_events=300)
    proc = a.start()
    tps = [TopicPartition(topic_set.topic("trade"), p) for p in range(3)]
    probe = consumer(f"probe-{a.app_id}", stack)
    ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
    assert sum(ends) == len(trades)
    group = consumer(a.app_id, stack)  # same group id, never subscribes: only reads the committed offsets
    deadline = time.monotonic() + 400
    while [c.offset for c in group.committed(tps, timeout=10)] != ends:
        assert proc.poll() is None, a.log()[-3000:]
        assert time.monotonic() < deadline, ([c.offset for c in group.committed(tps, timeout=10)], ends)
        time.sleep(0.5)
    probe.close()
    group.close()
