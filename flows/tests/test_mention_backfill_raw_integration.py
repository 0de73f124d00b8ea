"""The mention rebuild from the fetched pages on what the real crawler wrote: a gallery simulator, the crawler
process (`--once`, three cycles: backfill, then new posts and comments with deletions) writing dc.raw, dc.post and
dc.comment in its transactions; `backfill --what mentions --source raw` (dc.raw in Kafka, parsed with
coinpulse_dcinside) leaves the same rows, minute by minute, as the rebuild from the crawler's dc.post / dc.comment
(which test_mention_backfill_integration proves equal to the agent's). The real bronze S3 sink copies dc.raw to S3,
stopped and restarted between crawls (so it resumes at a committed position that is a transaction marker);
`--source s3` over its objects leaves the same rows too: the objects account for the markers between them, so
the coverage check finds no gap. With one object deleted, the S3 rebuild refuses; with the start of the dc.raw log
deleted (as retention would), the raw rebuild refuses, naming the hours; neither changes anything."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from coinpulse_common import bronze, topics
from coinpulse_common.avro import registry_client, topic_schema
from coinpulse_common.kafka import admin
from coinpulse_common.s3 import client as s3_client
from coinpulse_flows import mention_backfill as mb
from coinpulse_flows.backfill import IncompleteSource
from coinpulse_flows.settings import FlowSettings
from coinpulse_sink.bronze_sink import BronzeS3Sink
from coinpulse_sink.metrics import SinkMetrics
from coinpulse_sink.model import MENTIONS, create_table_sql
from coinpulse_sink.naming import Names
from coinpulse_sink.settings import SinkSettings
from coinpulse_testing.kafka import read_messages
from coinpulse_testing.net import free_port, get_json
from coinpulse_testing.procs import spawn_python, stop
from coinpulse_testing.wait import wait_for
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BASES = (topics.DC_RAW, topics.DC_POST, topics.DC_COMMENT, topics.DC_CRAWL_RUN, topics.UPBIT_RAW)
FIELDS = ("market", "bucket_start", "mentions", "posts", "comments", "positive", "negative", "sentiment")


class BronzeRun:
    """The real bronze S3 sink over the test's namespace, in a thread (started and stopped as a crash would not)."""

    def __init__(self, s, ns: str) -> None:
        self.settings = SinkSettings(sink_namespace=ns, sink_bronze_max_age_s=1.0,
                                     sink_bronze_instance=f"{ns}-test")
        self.names = Names(ns)
        self.metrics = SinkMetrics()
        self.sink: BronzeS3Sink | None = None

    def start(self) -> None:
        self.sink = BronzeS3Sink(self.settings, self.names, self.metrics)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.sink.run, args=(self.stop_event,), daemon=True)
        self.thread.start()

    def written(self, topic: str) -> float:
        return self.metrics.registry.get_sample_value("coinpulse_sink_bronze_records_total", {"topic": topic}) or 0

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the bronze sink did not stop"


def test_the_rebuild_from_the_crawlers_pages_equals_the_rebuild_from_its_records(stack, unique, tmp_path):
    s = stack
    ns = f"itmbr_{unique}"
    prefix = f"{ns}."
    a = admin(s)
    for fut in a.create_topics([NewTopic(prefix + b, num_partitions=2, replication_factor=1) for b in BASES],
                               request_timeout=15).values():
        fut.result()
    reg = registry_client(s.registry)
    for b in BASES:
        reg.register_schema(f"{prefix}{b}-value", Schema(topic_schema(b), "AVRO"))
    port = free_port()
    sim_url = f"http://127.0.0.1:{port}"
    sim = spawn_python(["-m", "coinpulse_sim_dcinside", "--port", str(port), "--seed", "5", "--galleries",
                        "bitcoins_new1:normal", "--initial-posts", "25", "--initial-comments", "80",
                        "--comments-per-page", "8", "--posts-per-minute", "0", "--comments-per-minute", "0"],
                       tmp_path / "sim.log")
    env = {**os.environ, "COINPULSE_DC_BASE_URL": sim_url, "COINPULSE_DC_GALLERIES": "bitcoins_new1:normal",
           "COINPULSE_DC_DOWNLOAD_DELAY": "0", "COINPULSE_DC_TOPIC_PREFIX": prefix,
           "COINPULSE_DC_TRANSACTIONAL_ID": f"it-mbr-{unique}", "COINPULSE_DC_STATE_PATH": str(tmp_path / "st.db"),
           "COINPULSE_CRAWL_METRICS_PORT": "0", "COINPULSE_DC_BACKFILL_PAGES": "5", "COINPULSE_DC_LIST_NUM": "30",
           "COINPULSE_DC_RECENT_PAGES": "2", "COINPULSE_LOG_FORMAT": "json"}
    schema = f"zz_mbr_{unique}"
    fs = FlowSettings(mentions_table=f"{schema}.mentions_1m", backfill_s3_prefix=f"{ns}/")
    raw_topic = prefix + topics.DC_RAW
    sink = BronzeRun(s, ns)
    s3 = s3_client(s)

    def sink_caught_up() -> bool:
        return sink.written(raw_topic) >= len(read_messages(s, raw_topic, 60, complete=True))

    try:
        wait_for(lambda: get_json(f"{sim_url}/sim/state"), 30, "the gallery simulator")

        def crawl() -> None:
            with open(tmp_path / "crawler.log", "a") as log:
                rc = subprocess.run([sys.executable, "-m", "coinpulse_crawl_dc", "--once"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=300).returncode
            assert rc == 0, (tmp_path / "crawler.log").read_text()[-3000:]

        def copy_to_bronze(cycle: int) -> None:
            # the sink copies what is there and stops: its committed position is then the cycle's commit marker,
            # and the next run resumes there (its objects say the marker before them holds no record)
            sink.start()
            wait_for(sink_caught_up, 120, f"the bronze sink to copy cycle {cycle} of {raw_topic} to S3")
            sink.stop()

        crawl()
        copy_to_bronze(1)
        httpx.post(f"{sim_url}/sim/advance", json={"posts": 6, "comments": 20}, timeout=10).raise_for_status()
        crawl()
        copy_to_bronze(2)
        httpx.post(f"{sim_url}/sim/advance", json={"comments": 10, "delete_posts": 1, "delete_comments": 3},
                   timeout=10).raise_for_status()
        crawl()
        copy_to_bronze(3)
        written_until = datetime.now(UTC)
        site = get_json(f"{sim_url}/sim/state")["galleries"]["bitcoins_new1"]["posts"]
        first = min(p["created_at_ms"] for p in site)
        start = datetime.fromtimestamp(first // 60_000 * 60, UTC)
        end = written_until.replace(second=0, microsecond=0) + timedelta(minutes=1)
        late_s = max(1, int((written_until - end).total_seconds()) + 2)
        # the window must end before now; lead_s 0 is not needed: the topics hold everything from offset 0
        wait_for(lambda: datetime.now(UTC) > end + timedelta(seconds=late_s), 120, "the read window to end")

        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
            for stmt in create_table_sql(MENTIONS, schema):
                c.execute(stmt)

        def rows() -> list[tuple]:
            with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
                return c.execute(f"SELECT {', '.join(FIELDS)} FROM {schema}.mentions_1m "
                                 "ORDER BY market, bucket_start").fetchall()

        kw = {"late_s": late_s, "post_topic": prefix + topics.DC_POST, "comment_topic": prefix + topics.DC_COMMENT,
              "raw_topic": prefix + topics.DC_RAW}
        from_records = mb.rebuild(fs, start, end, "kafka", **kw)
        want = rows()
        assert from_records.minutes == len(want) > 5 and not from_records.problems, from_records
        assert sum(r[4] for r in want) > 0 and sum(r[3] for r in want) > 0  # comments and posts counted
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"UPDATE {schema}.mentions_1m SET mentions = mentions + 7")  # stale: the raw rebuild fixes it
        from_pages = mb.rebuild(fs, start, end, "raw", **kw)
        assert rows() == want, "the rebuild from dc.raw differs from the rebuild from dc.post / dc.comment"
        assert from_pages.pages["view"] > 0 and from_pages.pages["comment"] > 0 and from_pages.pages["list"] >= 3
        assert not from_pages.problems, from_pages
        assert from_pages.versions_unchanged > from_records.versions_unchanged  # re-fetches changed nothing

        # the same from the bronze sink's objects of dc.raw in S3
        keys = bronze.list_objects(s3, s.s3_bucket, f"{ns}/", "dc", int(start.timestamp() * 1000) - 3_600_000,
                                   int(end.timestamp() * 1000) + 3_600_000, topic=raw_topic)
        covers = [bronze.offsets_meta(s3, s.s3_bucket, k.key)[0] for k in keys]
        assert len({k.partition for k in keys}) == 2 and any(c is not None for c in covers), (keys, covers)
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"UPDATE {schema}.mentions_1m SET mentions = mentions + 3")
        from_s3 = mb.rebuild(fs, start, end, "s3", **kw)
        assert not from_s3.problems, from_s3
        assert rows() == want, "the rebuild from the bronze objects differs from the rebuild from the records"

        # an object of the middle deleted: the S3 rebuild refuses and changes nothing
        part_keys = [k for k in keys if k.partition == keys[0].partition]
        assert len(part_keys) >= 3, part_keys  # one object or more per cycle
        middle = part_keys[1]
        s3.delete_object(Bucket=s.s3_bucket, Key=middle.key)
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"UPDATE {schema}.mentions_1m SET mentions = 1000")
        with pytest.raises(IncompleteSource) as e:
            mb.rebuild(fs, start, end, "s3", **kw)
        assert e.value.missing and "are in no object" in str(e.value), str(e.value)
        assert {r[2] for r in rows()} == {1000}

        # retention removed the start of a dc.raw partition: refused, nothing changed
        for fut in a.delete_records([TopicPartition(prefix + topics.DC_RAW, 0, 1)], request_timeout=15).values():
            fut.result()
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"UPDATE {schema}.mentions_1m SET mentions = 1000")
        with pytest.raises(IncompleteSource) as e:
            mb.rebuild(fs, start, end, "raw", **kw)
        assert e.value.missing and f"{prefix}{topics.DC_RAW}[0]" in str(e.value)
        assert {r[2] for r in rows()} == {1000}
    finally:
        stop(sim)
        if sink.sink is not None and sink.thread.is_alive():
            sink.stop()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s.s3_bucket, Prefix=f"{ns}/"):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=s.s3_bucket, Key=o["Key"])
        with psycopg.connect(fs.pg_dsn(), autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        a.delete_topics([prefix + b for b in BASES])
