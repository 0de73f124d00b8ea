"""Several crawl cycles against the gallery site while it grows, one crawler killed mid-cycle: the committed Kafka
content equals the site's content, nothing missed, nothing doubled. Real Kafka, registry, simulator and crawler
processes; unique topics, transactional id and state file per test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from coinpulse_common.avro import TopicCodec, registry_client, topic_schema
from coinpulse_common.kafka import admin, consumer
from coinpulse_common.topics import DC_COMMENT, DC_CRAWL_RUN, DC_POST, DC_RAW
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_testing.net import free_port
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema

pytestmark = pytest.mark.integration
BASES = (DC_RAW, DC_POST, DC_COMMENT, DC_CRAWL_RUN)
HASH_KEY = "integration-test-key"


def http(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def topics(stack, unique):
    prefix = f"t{unique}."
    a = admin(stack)
    futs = a.create_topics([NewTopic(prefix + b, num_partitions=1, replication_factor=1) for b in BASES])
    for f in futs.values():
        f.result(30)
    reg = registry_client(stack.registry)
    for b in BASES:
        reg.register_schema(f"{prefix}{b}-value", Schema(topic_schema(b), "AVRO"))
    yield prefix
    a.delete_topics([prefix + b for b in BASES])


@pytest.fixture
def sim(tmp_path):
    port = free_port()
    log = open(tmp_path / "sim.log", "w")  # noqa: SIM115 - the child writes it; closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "coinpulse_sim_dcinside", "--port", str(port), "--seed", "11",
         "--galleries", "bitcoins_new1:normal", "--start", "2025-12-31T23:20:00+09:00",
         "--initial-posts", "45", "--initial-comments", "140", "--comments-per-page", "8",
         "--posts-per-minute", "0", "--comments-per-minute", "0"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            http(f"{url}/sim/state")
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def crawler_env(stack, topics: str, sim: str, tmp: Path, unique: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "COINPULSE_DC_BASE_URL": sim, "COINPULSE_DC_GALLERIES": "bitcoins_new1:normal",
        "COINPULSE_DC_DOWNLOAD_DELAY_S": "0", "COINPULSE_DC_BACKOFF_BASE_S": "0.05", "COINPULSE_DC_TOPIC_PREFIX": topics,
        "COINPULSE_DC_TRANSACTIONAL_ID": f"test-{unique}", "COINPULSE_DC_STATE_PATH": str(tmp / "state.db"),
        "COINPULSE_CRAWL_METRICS_PORT": "0", "COINPULSE_DC_BACKFILL_PAGES": "10", "COINPULSE_DC_LIST_PAGE_ROWS": "30",
        "COINPULSE_DC_RECENT_PAGES": "2", "COINPULSE_DC_HASH_KEY": HASH_KEY, "COINPULSE_LOG_FORMAT": "json",
        "COINPULSE_KAFKA_BOOTSTRAP": stack.bootstrap,
    })
    return env


def run_cycle(env: dict[str, str], tmp: Path) -> None:
    with open(tmp / "crawler.log", "a") as log:
        rc = subprocess.run([sys.executable, "-m", "coinpulse_crawl_dc", "--once"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, timeout=180).returncode
    assert rc == 0, (tmp / "crawler.log").read_text()[-3000:]


def read_all(stack, topics: str) -> dict[str, list[tuple[str, dict]]]:
    """Everything committed in the test's topics (read_committed), in order."""
    out: dict[str, list[tuple[str, dict]]] = {}
    for b in (DC_POST, DC_COMMENT, DC_CRAWL_RUN):
        topic = topics + b
        codec = TopicCodec(topic, stack, schema_topic=b)
        c = consumer(f"g-{topic}", stack, **{"enable.partition.eof": True})
        c.assign([TopicPartition(topic, 0, 0)])
        recs = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise RuntimeError(m.error())
            v = codec.decode(m.value())
            v = {k: int(x.timestamp() * 1000) if isinstance(x, datetime) else x for k, x in v.items()}
            recs.append((m.key().decode(), v))
        c.close()
        out[b] = recs
    return out


def wait_for_views(sim: str, at_least: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while http(f"{sim}/sim/state")["requests"].get("view", 0) < at_least:
        assert proc.poll() is None, "crawler ended before it could be killed mid-cycle"
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.slow  # tens of seconds: `make test-fast` leaves it to `make test`
def test_kafka_equals_the_site_after_cycles_with_growth_and_a_kill(stack, topics, sim, tmp_path, unique):
    env = crawler_env(stack, topics, sim, tmp_path, unique)
    run_cycle(env, tmp_path)                                            # 1: backfill
    # A comment deleted and another added to the same post between two cycles leave its reply count unchanged,
    # the one change the reply-count signal cannot see (documented); deletions get a cycle of their own here.
    http(f"{sim}/sim/advance", {"delete_posts": 2, "delete_comments": 2})
    run_cycle(env, tmp_path)                                            # 2: deleted posts and comments
    http(f"{sim}/sim/advance", {"posts": 10, "comments": 30})
    run_cycle(env, tmp_path)                                            # 3: new and updated posts
    http(f"{sim}/sim/advance", {"posts": 12, "comments": 25})
    views_before = http(f"{sim}/sim/state")["requests"].get("view", 0)
    with open(tmp_path / "crawler.log", "a") as log:                   # 4: killed mid-cycle
        proc = subprocess.Popen([sys.executable, "-m", "coinpulse_crawl_dc", "--once"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        wait_for_views(sim, views_before + 5, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    run_cycle(env, tmp_path)                                            # 4 again, to completion
    http(f"{sim}/sim/advance", {"posts": 40, "comments": 20})
    run_cycle(env, tmp_path)                                            # 5: more than a list page of new posts
    run_cycle(env, tmp_path)                                            # 6: nothing new

    site = http(f"{sim}/sim/state")["galleries"]["bitcoins_new1"]["posts"]
    got = read_all(stack, topics)
    pseudo = Pseudonymizer(HASH_KEY)

    runs = [v for _, v in got[DC_CRAWL_RUN]]
    assert [r["status"] for r in runs] == ["ok"] * 6  # the killed cycle's transaction never became visible
    assert runs[-1]["new_posts"] == 0 and runs[-1]["new_comments"] == 0
    assert sum(r["new_posts"] for r in runs) + sum(r["deleted_posts"] for r in runs) >= len(site)

    # nothing doubled: no record emitted twice with the same content
    def content(v: dict) -> str:
        return json.dumps({k: x for k, x in v.items() if k not in ("fetched_at", "views", "recommend")}, sort_keys=True)

    for b in (DC_POST, DC_COMMENT):  # a key is re-emitted only when something changed since its last record
        last: dict[str, str] = {}
        dup = []
        for k, v in got[b]:
            if last.get(k) == content(v):
                dup.append(k)
            last[k] = content(v)
        assert dup == [], f"{b} doubled: {dup[:3]}"

    # nothing missed: the latest value of every key equals the site
    posts = {k: v for k, v in got[DC_POST]}
    assert set(posts) == {f"bitcoins_new1/{p['post_no']}" for p in site}
    comments = {k: v for k, v in got[DC_COMMENT]}
    want_comments = {f"bitcoins_new1/{p['post_no']}/{c['comment_no']}": c for p in site for c in p["comments"]
                     if not p["deleted"]}
    assert set(want_comments) <= set(comments)
    per_post = defaultdict(int)
    for p in site:
        v = posts[f"bitcoins_new1/{p['post_no']}"]
        assert v["deleted"] == p["deleted"], p["post_no"]
        assert (v["title"], v["head"], v["created_at"]) == (p["title"], p["head"], p["created_at_ms"])
        assert v["author_hash"] == pseudo.author(**p["author"]) and v["ip_hash"] == pseudo.ip(p["author"]["ip"])
        if not p["deleted"]:
            assert (v["body"], v["images"], v["reply_count"]) == (p["body"], p["images"], p["reply_count"])
        per_post[p["post_no"]] = len(p["comments"])
    for k, c in want_comments.items():
        v = comments[k]
        assert (v["kind"], v["deleted"], v["created_at"], v["parent_no"]) == (
            c["kind"], c["deleted"], c["created_at_ms"], c["parent_no"]), k
        if not c["deleted"]:
            assert v["text"] == c["text"], k
        assert v["author_hash"] == pseudo.author(**c["author"]), k
    assert {c["kind"] for c in want_comments.values()} >= {"text", "dccon", "voice"}
    assert any(c["parent_no"] for c in want_comments.values()) and any(p["deleted"] for p in site)
    assert max(per_post.values()) > 8  # some posts needed a second comment page


def test_cycle_stops_on_429_reports_throttled_and_the_next_cycle_catches_up(stack, topics, sim, tmp_path, unique):
    env = crawler_env(stack, topics, sim, tmp_path, unique)
    http(f"{sim}/sim/control", {"block_after": 6, "block_status": 429})
    run_cycle(env, tmp_path)
    http(f"{sim}/sim/control", {"block_after": None, "faults": [500, 503]})  # retried with backoff
    run_cycle(env, tmp_path)
    got = read_all(stack, topics)
    runs = [v for _, v in got[DC_CRAWL_RUN]]
    assert [r["status"] for r in runs] == ["throttled", "ok"]
    assert "429" in runs[0]["reason"]
    site = http(f"{sim}/sim/state")
    assert site["requests"]["blocked"] == 1  # stopped at the first 429, no hammering
    assert {k for k, _ in got[DC_POST]} == {f"bitcoins_new1/{p['post_no']}" for p in site["galleries"]["bitcoins_new1"]["posts"]}
    assert len(got[DC_POST]) == len({k for k, _ in got[DC_POST]})


def dead_letters_from(stack, sim: str) -> list[dict]:
    """Committed records of dlq.crawl-dc about pages of this test's simulator."""
    from coinpulse_common.topics import dlq

    topic = dlq("crawl-dc")
    codec = TopicCodec(topic, stack)
    c = consumer(f"g-dlq-{time.monotonic_ns()}", stack, **{"enable.partition.eof": True})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, eof, deadline = [], set(), time.monotonic() + 30
    while len(eof) < len(parts):
        assert time.monotonic() < deadline, "dlq.crawl-dc not read to its end in 30 s"
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise RuntimeError(m.error())
        v = codec.decode(m.value())
        if (v.get("source") or "").startswith(sim):
            out.append(v)
    c.close()
    return out


def test_malformed_pages_are_dead_lettered_and_fetched_again_next_cycle(stack, topics, sim, tmp_path, unique):
    env = crawler_env(stack, topics, sim, tmp_path, unique)
    http(f"{sim}/sim/control", {"malformed": {"view": 3, "comment": 2}})
    run_cycle(env, tmp_path)  # backfill: three view pages lose their header, two comment answers are cut off
    served = http(f"{sim}/sim/state")["requests"]
    assert served["malformed_view"] == 3 and served["malformed_comment"] == 2
    letters = dead_letters_from(stack, sim)
    assert sorted(v["context"]["kind"] for v in letters) == ["bad_json"] * 2 + ["missing_field"] * 3
    assert all(v["service"] == "crawl-dc" and v["payload"] for v in letters)
    run_cycle(env, tmp_path)  # the incomplete posts are fetched again
    assert len(dead_letters_from(stack, sim)) == 5  # nothing new went wrong

    site = http(f"{sim}/sim/state")["galleries"]["bitcoins_new1"]["posts"]
    got = read_all(stack, topics)
    runs = [v for _, v in got[DC_CRAWL_RUN]]
    assert [r["status"] for r in runs] == ["degraded", "ok"]  # the first cycle says it dead-lettered something
    assert runs[0]["dead_letters"] == 5 and "5 dead letters" in runs[0]["reason"]
    assert runs[0]["errors"] >= 5 and runs[1]["updated_posts"] >= 1 and runs[1]["dead_letters"] == 0
    posts = {k: v for k, v in got[DC_POST]}
    comments = {k for k, _ in got[DC_COMMENT]}
    for p in site:
        v = posts[f"bitcoins_new1/{p['post_no']}"]
        if not p["deleted"]:
            assert (v["body"], v["reply_count"]) == (p["body"], p["reply_count"]), p["post_no"]
    assert comments >= {f"bitcoins_new1/{p['post_no']}/{c['comment_no']}" for p in site for c in p["comments"]
                        if not p["deleted"]}


@pytest.mark.slow
def test_a_post_whose_page_keeps_failing_is_given_up_after_post_attempts_cycles(stack, topics, sim, tmp_path, unique):
    """The simulator answers one post's view page with 500, every time: Scrapy retries it (with backoff) in each
    cycle, the crawler keeps what the list showed and fetches it again next cycle, and after POST_ATTEMPTS cycles
    gives it up with a dead letter naming the last status; the crawl-run record counts it; no request after."""
    from coinpulse_crawl_dc.spiders.gallery import POST_ATTEMPTS

    env = crawler_env(stack, topics, sim, tmp_path, unique)
    posts = http(f"{sim}/sim/state")["galleries"]["bitcoins_new1"]["posts"]
    broken = max(p["post_no"] for p in posts if not p["deleted"])
    http(f"{sim}/sim/control", {"fail_posts": {f"bitcoins_new1/{broken}": 500}})
    served = []
    for _ in range(POST_ATTEMPTS + 1):
        run_cycle(env, tmp_path)
        served.append(http(f"{sim}/sim/state")["requests"].get("failed_view", 0))
    per_cycle = 1 + int(env.get("COINPULSE_DC_RETRY_TIMES", "3"))  # the request and Scrapy's retries
    assert served == [per_cycle * (i + 1) for i in range(POST_ATTEMPTS)] + [per_cycle * POST_ATTEMPTS]

    letters = [v for v in dead_letters_from(stack, sim) if f"no={broken}" in v["source"]]
    assert len(letters) == 1, letters
    [letter] = letters
    assert letter["context"]["kind"] == "given_up" and f"post {broken}" in letter["reason"]
    assert "HTTP 500" in letter["reason"] and f"failed in {POST_ATTEMPTS} cycles in a row" in letter["reason"]

    got = read_all(stack, topics)
    runs = [v for _, v in got[DC_CRAWL_RUN]]
    assert [r["status"] for r in runs] == ["ok"] * (POST_ATTEMPTS - 1) + ["degraded", "ok"]
    assert [r["skipped_posts"] for r in runs] == [0] * (POST_ATTEMPTS - 1) + [1, 0]
    assert "1 of them after failed requests" in runs[POST_ATTEMPTS - 1]["reason"]
    assert all(r["errors"] >= 1 for r in runs[:POST_ATTEMPTS]) and runs[-1]["errors"] == 0
    # nothing else suffered: every other live post complete, the broken one as the list showed it
    latest = {k: v for k, v in got[DC_POST]}
    assert set(latest) == {f"bitcoins_new1/{p['post_no']}" for p in posts}
    for p in posts:
        v = latest[f"bitcoins_new1/{p['post_no']}"]
        if p["post_no"] == broken:
            assert (v["title"], v["body"]) == (p["title"], None)
        elif not p["deleted"]:
            assert (v["body"], v["reply_count"]) == (p["body"], p["reply_count"]), p["post_no"]
