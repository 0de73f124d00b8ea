"""Mention buckets against the brute-force reference."""

from __future__ import annotations

import pytest
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.mentions import DocHits, MentionEngine
from coinpulse_mentions import default_matcher, doc_hits
from coinpulse_testing.reference import reference_mentions
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000


def test_doc_hits_count_mentions_and_sentiment_per_market():
    hits = doc_hits(default_matcher(), "p:coin/1", T0, "비트코인 떡상 가즈아 비트도 이더는 떡락", True)
    assert [(h.market, h.mentions, h.positive, h.negative) for h in hits] == [
        ("KRW-BTC", 2, 2, 1), ("KRW-ETH", 1, 2, 1)
    ]


def test_recrawled_post_replaces_its_contribution_and_revises():
    eng = MentionEngine(Timing(1_000, 600_000))
    eng.add(DocHits("p:coin/1", "KRW-BTC", T0 + 5, 1, 0, 0, False))
    eng.advance(T0 + 61_000)
    status, emits = eng.add(DocHits("p:coin/1", "KRW-BTC", T0 + 5, 3, 1, 0, True))
    assert status == "ok"
    assert [(e["mentions"], e["posts"], e["revision"]) for e in emits] == [(3, 1, 1)]
    assert eng.add(DocHits("p:coin/1", "KRW-BTC", T0 + 5, 1, 0, 0, False)) == ("unchanged", [])


@st.composite
def hit_streams(draw):
    timing = Timing(draw(st.sampled_from([0, 5_000])), draw(st.sampled_from([5_000, 120_000])))
    events = []
    for i in range(draw(st.integers(0, 40))):
        ts = T0 + draw(st.integers(0, 400_000))
        doc = draw(st.sampled_from(["p:g/1", "p:g/2", "c:g/1/1", "c:g/1/2", f"p:g/{10 + i}"]))
        h = DocHits(doc, draw(st.sampled_from(["KRW-BTC", "KRW-ETH"])), ts, draw(st.integers(1, 3)),
                    draw(st.integers(0, 2)), draw(st.integers(0, 2)), draw(st.booleans()))
        events.append((ts + draw(st.sampled_from([0, 0, 3_000, 60_000, 300_000])), i, ("hits", 0, h)))
    events.sort()
    evs = [e for _, _, e in events] + [("tick", 0, T0 + 10**7)]
    return timing, evs


@settings(max_examples=100, deadline=None)
@given(hit_streams())
def test_final_mention_buckets_equal_reference(scn):
    timing, events = scn
    # a document's time and market are fixed by its identity in real data
    first = {}
    events = [e if e[0] == "tick" else ("hits", 0, e[2]._replace(ts=first.setdefault(e[2].doc, e[2].ts)))
              for e in events]
    eng = MentionEngine(timing)
    finals, revs = {}, {}
    for kind, _, item in events:
        emits = eng.advance(item) if kind == "tick" else eng.add(item)[1]
        for rec in emits:
            k = (rec["market"], rec["bucket_start"])
            assert rec["revision"] == revs.get(k, -1) + 1
            revs[k] = rec["revision"]
            finals[k] = {f: v for f, v in rec.items() if f != "revision"}
    want, _ = reference_mentions(events, timing)
    assert finals == want
