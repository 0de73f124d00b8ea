"""The mention rebuild on what the real writers wrote: posts and comments sent by the crawler's own transactional
Kafka writer (its partitions end with transaction markers), counted by the real candle agent (a process, reading
the same topics), rebuilt by `backfill --what mentions` into a table of the sink's model: the rebuilt rows equal
the agent's last records, a stale row of the range goes, a row outside it stays. Then, with the start of one
partition deleted (as retention would), the rebuild refuses, naming the hours, and changes nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from coinpulse_common import topics
from coinpulse_common.avro import registry_client, schema_text
from coinpulse_common.kafka import admin
from coinpulse_crawl_dc.config import CrawlSettings
from coinpulse_crawl_dc.sink import KafkaSink
from coinpulse_dcinside.records import comment_key, post_key
from coinpulse_flows import mention_backfill as mb
from coinpulse_flows.backfill import IncompleteSource
from coinpulse_flows.settings import FlowSettings
from coinpulse_sink.model import MENTIONS, create_table_sql
from coinpulse_testing.net import free_port
from coinpulse_testing.procs import stop
from coinpulse_testing.sandbox import TopicReader, TopicSet, normalise, start_agent
from coinpulse_testing.wait import wait_for
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["비트코인 떡상 가즈아", "이더는 물렸다 손절", "리플도 간다 XRP", "오늘 점심 뭐 먹지", "BTC가 최고 ㅅㅅ",
         "솔라나 폭락 ㅠㅠ", "Bitcoin and ETHEREUM to the moon", "비트도 이더도 하락"]
FIELDS = ("market", "bucket_start", "mentions", "posts", "comments", "positive", "negative", "sentiment")


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _documents(start: datetime, rnd: random.Random) -> list[list[tuple[str, str, dict]]]:
    """Three crawl cycles of two galleries over the 10 minutes from `start` (and one minute either side): list
    versions without a body, view versions with one, a body-less re-crawl, comments."""
    cycles: list[list[tuple[str, str, dict]]] = [[], [], []]
    for no in range(40):
        g = ("coin", "bitcoin")[no % 2]
        created = _ms(start) + rnd.randrange(-60_000, 11 * 60_000)
        post = {"gallery": g, "post_no": no, "title": rnd.choice(TEXTS), "body": None, "head": None,
                "author_hash": "a", "ip_hash": None, "is_member": False, "created_at": created, "views": 0,
                "recommend": 0, "reply_count": 0, "deleted": False, "url": None, "fetched_at": created,
                "images": None}
        cycles[0].append((topics.DC_POST, post_key(g, no), post))
        cycles[1].append((topics.DC_POST, post_key(g, no), {**post, "body": rnd.choice(TEXTS), "images": []}))
        if no % 7 == 0:
            cycles[2].append((topics.DC_POST, post_key(g, no), post))  # body-less: changes nothing
        for c in range(no % 3):
            cycles[1 + c % 2].append((topics.DC_COMMENT, comment_key(g, no, c), {
                "gallery": g, "post_no": no, "comment_no": c, "parent_no": None, "author_hash": "b",
                "ip_hash": None, "kind": "text", "text": rnd.choice(TEXTS), "created_at": created + 30_000 * c,
                "deleted": False, "fetched_at": created}))
    return cycles


def test_rebuild_equals_the_agents_mentions_and_refuses_a_truncated_log(stack, unique, tmp_path):
    s = stack
    prefix = f"it-mb-{unique}."
    post_t, comment_t = prefix + topics.DC_POST, prefix + topics.DC_COMMENT
    a = admin(s)  # kept: futures fail when their client is collected
    for fut in a.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                for t in (post_t, comment_t)], request_timeout=15).values():
        fut.result()
    reg = registry_client(s.registry)
    for t, canonical in ((post_t, topics.DC_POST), (comment_t, topics.DC_COMMENT)):
        reg.register_schema(f"{t}-value", Schema(schema_text(topics.BY_NAME[canonical].schema), "AVRO"))
    agent_topics = TopicSet(f"it-mb-{unique}")
    agent_topics.create(s)

    # the documents, written by the crawler's writer, one transaction per cycle and gallery
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(minutes=40), now - timedelta(minutes=30)
    cfg = CrawlSettings(dc_topic_prefix=prefix, dc_transactional_id=f"it-mb-{unique}")
    sinks = {g: KafkaSink(cfg, g) for g in ("coin", "bitcoin")}
    for cycle in _documents(start, random.Random(11)):
        for g, sink in sinks.items():
            sink.begin()
            for base, key, value in cycle:
                if value["gallery"] == g:
                    sink.send(base, key, value)
            sink.commit()
    written_until = datetime.now(UTC)

    # the agent counts them
    env = agent_topics.agent_env(f"it-mb-{unique}", free_port(), MENTION_GRACE_MS=1000)
    env.update(COINPULSE_CANDLE_POST_TOPIC=post_t, COINPULSE_CANDLE_COMMENT_TOPIC=comment_t)
    agent = start_agent(env, str(tmp_path / "agent.log"))
    reader = TopicReader(s, agent_topics.topic("mention"), topics.MENTION_1M, 3)

    # the rebuild into a table of the sink's model, with a stale row in the range and a row outside it
    schema = f"zz_mb_{unique}"
    fs = FlowSettings(mentions_table=f"{schema}.mentions_1m")
    with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
        for stmt in create_table_sql(MENTIONS, schema):
            c.execute(stmt)
        for market, at in (("KRW-DOGE", start + timedelta(minutes=3)), ("KRW-DOGE", end + timedelta(hours=1))):
            c.execute(f"INSERT INTO {schema}.mentions_1m VALUES (%s, %s, 9, 9, 0, 0, 0, 0, 0, now())", (market, at))
    late_s = int((written_until - end).total_seconds()) + 1
    wait_for(lambda: datetime.now(UTC) > end + timedelta(seconds=late_s), 10, "the read window to end before now")
    try:
        r = mb.rebuild(fs, start, end, late_s=late_s, post_topic=post_t, comment_topic=comment_t)
        assert r.records == sum(len(c) for c in _documents(start, random.Random(11)))
        assert r.versions_unchanged > 0 and r.minutes > 5 and not r.problems, r
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            rows = c.execute(f"SELECT {', '.join(FIELDS)}, revision FROM {schema}.mentions_1m "
                             "ORDER BY market, bucket_start").fetchall()
        rebuilt = {(m, _ms(b)): dict(zip(FIELDS, (m, _ms(b), *rest[:-1]), strict=True))
                   for m, b, *rest in rows if start <= b < end}
        assert [r[:2] for r in rows if not start <= r[1] < end] == [("KRW-DOGE", end + timedelta(hours=1))]
        assert ("KRW-DOGE", _ms(start + timedelta(minutes=3))) not in rebuilt  # the stale row went

        def agent_rows() -> dict:
            reader.poll(0.5)
            recs = (normalise(v) for v in reader.last.values())
            return {(v["market"], v["bucket_start"]): {f: v[f] for f in FIELDS} for v in recs
                    if _ms(start) <= v["bucket_start"] < _ms(end)}

        wait_for(lambda: agent_rows() == rebuilt, 180,
                 "the agent's mention.1m records of the range to equal the rebuilt rows")

        # retention removed the start of one partition: refused, nothing changed
        low = TopicPartition(post_t, 0, 1)
        for fut in a.delete_records([low], request_timeout=15).values():
            fut.result()
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"UPDATE {schema}.mentions_1m SET mentions = 1000 WHERE bucket_start >= %s AND bucket_start < %s",
                      (start, end))
        with pytest.raises(IncompleteSource) as e:
            mb.rebuild(fs, start, end, late_s=late_s, post_topic=post_t, comment_topic=comment_t)
        assert e.value.missing and f"{post_t}[0]" in str(e.value)
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            assert c.execute(f"SELECT count(*) FROM {schema}.mentions_1m WHERE mentions = 1000").fetchone()[0] == \
                len(rebuilt)
    finally:
        reader.close()
        stop(agent)
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        a.delete_topics([post_t, comment_t, *(t for t, *_ in agent_topics.names().values())])
