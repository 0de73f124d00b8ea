"""Documents, versions and minutes: the rules both the agent's engine and the mention rebuild apply."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from coinpulse_mentions import (
    BadDocument,
    DocHits,
    MinuteMentions,
    comment_document,
    default_matcher,
    document_hits,
    load_matcher,
    post_document,
    replaces,
)

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000


def post(no=1, title="비트코인 간다", body=None, created_at=T0):
    return {"gallery": "coin", "post_no": no, "title": title, "body": body, "created_at": created_at}


def test_post_text_is_title_then_body_and_has_body_means_the_body_is_known():
    assert post_document(post(body="이더 떡상")) == ("p:coin/1", T0, "비트코인 간다\n이더 떡상", True)
    assert post_document(post(body="")) == ("p:coin/1", T0, "비트코인 간다", True)
    assert post_document(post(body=None)) == ("p:coin/1", T0, "비트코인 간다", False)


def test_comment_document_and_exact_datetime_times():
    t = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    d = comment_document({"gallery": "g", "post_no": 7, "comment_no": 9, "text": None, "created_at": t})
    assert d == ("c:g/7/9", 1767323045678, "", True)


@pytest.mark.parametrize("rec", [post(created_at=datetime(2026, 1, 1)), post(created_at="now"), post(created_at=True),
                                 {"gallery": "g", "title": "x", "created_at": T0}, post(title=None)])
def test_unreadable_documents_raise_bad_document(rec):
    with pytest.raises(BadDocument):
        post_document(rec)


def test_a_version_replaces_unless_same_bodyless_or_not_newer():
    with_body = (2, 1, 0, True, 10)
    assert replaces(None, with_body)
    assert not replaces(with_body, (2, 1, 0, True, 11))  # says the same
    assert not replaces(with_body, (1, 0, 0, False, 11))  # no body: never replaces a body
    assert not replaces(with_body, (5, 0, 0, True, 10))  # not newer (a replayed record)
    assert replaces(with_body, (5, 0, 0, True, 11))
    assert replaces((1, 0, 0, False, 3), (2, 1, 0, True, -1))  # unordered versions replace


def test_minutes_count_each_document_once_with_its_counted_version():
    m = default_matcher()
    hits = [*document_hits(m, post_document(post(1)), 0),
            *document_hits(m, post_document(post(1, body="비트 떡상")), 5),
            *document_hits(m, post_document(post(1, body=None)), 6),  # body-less re-crawl: ignored
            *document_hits(m, comment_document({"gallery": "coin", "post_no": 1, "comment_no": 1,
                                                "text": "BTC 손절", "created_at": T0 + 59_999}), 0),
            *document_hits(m, post_document(post(2, title="리플 가즈아", created_at=T0 + 60_000)), 1)]
    recs = MinuteMentions().add_all(hits).records()
    assert recs == {
        ("KRW-BTC", T0): {"market": "KRW-BTC", "bucket_start": T0, "mentions": 3, "posts": 1, "comments": 1,
                          "positive": 1, "negative": 1, "sentiment": 0.0, "revision": 0},
        ("KRW-XRP", T0 + 60_000): {"market": "KRW-XRP", "bucket_start": T0 + 60_000, "mentions": 1, "posts": 1,
                                   "comments": 0, "positive": 1, "negative": 0, "sentiment": 1.0, "revision": 0},
    }


def test_doc_hits_round_trip_the_hits_topic_json():
    h = DocHits("p:g/1", "KRW-BTC", T0, 2, 1, 0, True, 42)
    assert DocHits.from_json(json.loads(json.dumps(h.to_json()))) == h


def test_custom_dictionary_files(tmp_path):
    aliases = tmp_path / "aliases.json"
    aliases.write_text(json.dumps({"version": "t1", "particles": ["가"],
                                   "markets": {"KRW-NEWC": {"ko": ["뉴코인"], "tickers": ["NEWC"]}}}), "utf-8")
    m = load_matcher(aliases_path=aliases)
    assert [h.market for h in m.mentions("뉴코인가 NEWC 비트코인")] == ["KRW-NEWC", "KRW-NEWC"]
    assert m.alias_version == "t1" and m.lexicon_version == default_matcher().lexicon_version
    assert load_matcher("", None) is default_matcher()
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "x"}', "utf-8")
    with pytest.raises(ValueError, match="alias dictionary has no particles, markets"):
        load_matcher(aliases_path=bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_matcher(aliases_path=tmp_path / "missing.json")
