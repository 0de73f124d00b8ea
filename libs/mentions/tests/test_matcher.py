"""Alias matching with Korean particles, whole-word tickers, and lexicon sentiment."""

from __future__ import annotations

import pytest
from coinpulse_mentions import default_matcher

pytestmark = pytest.mark.unit


def markets(text: str) -> list[str]:
    return [h.market for h in default_matcher().mentions(text)]


@pytest.mark.parametrize("text", ["비트코인", "비트코인이 간다", "비트코인으로 갈아탐", "비트도 오르냐", "오늘 비트코인까지",
                                  "비트코인부터 산다", "비트코인이랑 이더", "(비트코인)", "비트코인!!", "빗코를 샀다"])
def test_korean_alias_with_particle_or_boundary_counts(text):
    assert markets(text)[0] == "KRW-BTC"


@pytest.mark.parametrize("text", ["트리플 악셀", "비트코인캐시 얘기", "리플렉스", "이더넷 케이블", "도지사 선거"])
def test_alias_inside_a_longer_hangul_word_does_not_count(text):
    assert markets(text) == []


def test_longest_alias_wins_over_its_prefix():
    hits = default_matcher().mentions("이더리움클래식을 샀다")
    assert [(h.market, h.alias) for h in hits] == [("KRW-ETC", "이더리움클래식")]


@pytest.mark.parametrize("text,expected", [("BTC 간다", ["KRW-BTC"]), ("BTC가 최고", ["KRW-BTC"]),
                                           ("btc", []), ("BTCUSD", []), ("ABTC", []), ("I hold SOL", ["KRW-SOL"]),
                                           ("sol", []), ("Bitcoin and ETHEREUM", ["KRW-BTC", "KRW-ETH"]),
                                           ("OM 떡락", ["KRW-OM"]), ("ROOM", [])])
def test_latin_aliases_are_whole_words_with_case_rules(text, expected):
    assert markets(text) == expected


def test_every_mention_counts():
    assert markets("리플 리플 리플도 XRP") == ["KRW-XRP"] * 4


def test_sentiment_counts_positive_and_negative_terms():
    assert default_matcher().sentiment("도지 떡상 가즈아 근데 이더는 물렸다 손절") == (2, 2)


def test_dictionaries_are_versioned():
    m = default_matcher()
    assert m.alias_version and m.lexicon_version
