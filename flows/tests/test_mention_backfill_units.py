"""The mention rebuild without a stack: from the same post and comment records, the rebuild's minutes equal what the
candle agent's engine ends with (run in-process, fed as the agent feeds it); it refuses what it cannot read."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.mentions import MentionEngine
from coinpulse_candle_agent.trades import FutureTimestamp, check_not_future
from coinpulse_flows import __main__ as cli
from coinpulse_flows import mention_backfill as mb
from coinpulse_flows.backfill import IncompleteSource
from coinpulse_flows.settings import FlowSettings
from coinpulse_mentions import BadDocument, comment_document, default_matcher, document_hits, post_document
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

T0 = 1_764_000_000_000 - 1_764_000_000_000 % 3_600_000  # an hour start
MIN = 60_000
TEXTS = ["비트코인 떡상 가즈아", "이더는 물렸다 손절", "리플도 간다 XRP", "오늘 점심 뭐 먹지", "BTC가 최고 ㅅㅅ",
         "도지사 선거", "솔라나 폭락 ㅠㅠ", "Bitcoin and ETHEREUM to the moon", "비트도 이더도 하락", ""]
AGENT_TIMING = Timing(30_000, 3 * 3_600_000)  # the agent's mention grace and lateness defaults


def agent_minutes(records: list[mb.DocRecord], timing: Timing, max_future_ms: int = 300_000) -> dict:
    """What the agent emits last per (market, minute), fed as `CandleAgent._match_mentions` / `_count_mentions` feed
    its engine: each record read as a document (bad ones dead-lettered, future ones too, against the wall clock of
    its arrival), its hits with the record offset as version, the engine ticked to the newest document time."""
    m, eng, last = default_matcher(), MentionEngine(timing), {}

    def emit(recs):
        for rec in recs:
            last[(rec["market"], rec["bucket_start"])] = {k: v for k, v in rec.items() if k != "revision"}

    for r in records:
        try:
            d = post_document(r.value) if r.kind == "post" else comment_document(r.value)
            check_not_future("created_at", d.ts, r.timestamp, max_future_ms)
        except (BadDocument, FutureTimestamp):
            continue
        for h in document_hits(m, d, r.offset):
            emit(eng.add(h)[1])
        emit(eng.advance(d.ts))
    emit(eng.advance(10**15))
    return last


def draw_records(rnd: random.Random, n: int, late_ms: int = 2 * 3_600_000) -> list[mb.DocRecord]:
    """Posts (list version without body, then view versions, sometimes a body-less re-crawl) and comments, created
    over 20 minutes around T0 + 5 min, each record stamped at or after its document's time, in arrival order."""
    out, offsets = [], Counter()
    for i in range(n):
        created = T0 + rnd.randrange(-5 * MIN, 15 * MIN)
        gallery = rnd.choice(["coin", "bitcoin"])
        if rnd.random() < 0.6:
            versions = [None] + [rnd.choice(TEXTS) for _ in range(rnd.randrange(0, 3))]
            if rnd.random() < 0.2:
                versions.append(None)
            title = rnd.choice(TEXTS)
            at = created + rnd.randrange(0, 90_000)
            for body in versions:
                out.append((at, "post", {"gallery": gallery, "post_no": i, "title": title, "body": body,
                                         "created_at": created}))
                at += rnd.randrange(1_000, late_ms // 4)
        else:
            out.append((created + rnd.randrange(0, late_ms), "comment",
                        {"gallery": gallery, "post_no": rnd.randrange(n), "comment_no": i, "text": rnd.choice(TEXTS),
                         "created_at": created}))
    out.sort(key=lambda x: x[0])
    recs = []
    for at, kind, value in out:
        p = (len(value["gallery"]) + value["post_no"]) % 3  # a document lives in one partition of its topic
        recs.append(mb.DocRecord(kind, p, offsets[(kind, p)], at, value))
        offsets[(kind, p)] += 1
    return recs


def in_range(minutes: dict, lo: int, hi: int) -> dict:
    return {k: v for k, v in minutes.items() if lo <= k[1] < hi}


def rebuilt(records, lo, hi, **kw):
    rows, _ = mb.rebuild_minutes(records, lo, hi, **kw)
    return {k: {f: x for f, x in v.items() if f != "revision"} for k, v in rows.items()}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 60))
def test_rebuild_equals_the_agent_engine_on_the_same_records(seed, n):
    recs = draw_records(random.Random(seed), n)
    lo, hi = T0, T0 + 10 * MIN  # a range with documents before and after it
    want = in_range(agent_minutes(recs, AGENT_TIMING), lo, hi)
    assert rebuilt(recs, lo, hi) == want


def test_rebuild_counts_what_the_agent_dropped_as_late():
    rnd = random.Random(7)
    recs = draw_records(rnd, 80)
    lo, hi = T0, T0 + 10 * MIN
    strict = in_range(agent_minutes(recs, Timing(30_000, 60_000)), lo, hi)  # one minute of lateness: drops some
    unbounded = in_range(agent_minutes(recs, Timing(30_000, 10**12)), lo, hi)
    assert strict != unbounded, "the scenario should make the strict agent drop late documents"
    assert rebuilt(recs, lo, hi) == unbounded


def test_a_realistic_mix_counts_mentions_posts_comments_and_sentiment():
    recs = [mb.DocRecord("post", 0, 0, T0 + 1_000, {"gallery": "coin", "post_no": 1, "title": "비트코인 간다",
                                                    "body": None, "created_at": T0}),
            mb.DocRecord("post", 0, 1, T0 + 9_000, {"gallery": "coin", "post_no": 1, "title": "비트코인 간다",
                                                    "body": "비트 떡상 가즈아", "created_at": T0}),
            mb.DocRecord("post", 0, 2, T0 + 99_000, {"gallery": "coin", "post_no": 1, "title": "비트코인 간다",
                                                     "body": None, "created_at": T0}),  # body-less re-crawl
            mb.DocRecord("comment", 1, 0, T0 + 70_000, {"gallery": "coin", "post_no": 1, "comment_no": 5,
                                                        "text": "BTC 손절", "created_at": T0 + 59_000}),
            mb.DocRecord("comment", 1, 1, T0 + 70_000, {"gallery": "coin", "post_no": 1, "comment_no": 6,
                                                        "text": "이더", "created_at": T0 + 10**6}),  # future
            mb.DocRecord("comment", 1, 2, T0 + 70_000, {"gallery": "coin", "post_no": 1, "text": "x"})]  # bad
    rows, stats = mb.rebuild_minutes(recs, T0, T0 + 60 * MIN)
    assert rows == {("KRW-BTC", T0): {"market": "KRW-BTC", "bucket_start": T0, "mentions": 3, "posts": 1,
                                      "comments": 1, "positive": 2, "negative": 1, "sentiment": 1 / 3,
                                      "revision": 0}}
    assert stats["future_timestamp"] == 1 and stats["bad_document"] == 1 and stats["versions_unchanged"] == 1
    assert rebuilt(recs, T0, T0 + 60 * MIN) == agent_minutes(recs, AGENT_TIMING)


def test_refuses_a_range_whose_later_versions_are_not_in_yet():
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    with pytest.raises(IncompleteSource, match="end after now"):
        mb.rebuild(FlowSettings(), end - timedelta(minutes=10), end)  # late_s 3 h: not all read yet


def test_an_unknown_source_is_not_a_mention_source():
    with pytest.raises(mb.UnsupportedSource, match="dc.raw"):
        mb.rebuild(FlowSettings(), datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, 1, tzinfo=UTC), "parquet")


def test_cli_mentions_target(capsys):
    soon = datetime.now(UTC).replace(second=0, microsecond=0)
    for source in ("raw", "s3"):  # the fetched pages: the same refusal of a window not over yet
        assert cli.main(["backfill", "--what", "mentions", "--from", (soon - timedelta(minutes=5)).isoformat(),
                         "--to", soon.isoformat(), "--source", source]) == 3
        assert "end after now" in capsys.readouterr().err
    assert cli.main(["backfill", "--what", "mentions", "--loaded-from", "2025-01-01T00:00",
                     "--loaded-to", "2025-01-01T01:00"]) == 2
    soon = datetime.now(UTC).replace(second=0, microsecond=0)
    assert cli.main(["backfill", "--what", "mentions", "--from", (soon - timedelta(minutes=5)).isoformat(),
                     "--to", soon.isoformat()]) == 3
    assert "end after now" in capsys.readouterr().err
