"""Coin mentions and lexicon sentiment in gallery text, with one Aho-Corasick automaton each (pyahocorasick).

Rules (data in `data/aliases.json` and `data/lexicon.json`, package data of coinpulse_mentions, both versioned;
`load_matcher(aliases_path=..., lexicon_path=...)` builds a matcher from other files of the same format):
- Korean aliases (`ko`) match at the start of a Hangul word (the character before is not Hangul or a letter or
  digit) and either end the word or are followed by exactly one particle from the dictionary's list
  (비트코인이, 이더리움으로, 리플도). An alias inside a longer Hangul word (트리플, 비트코인캐시 for 비트코인)
  does not count.
- English names match case-insensitively and tickers case-sensitively in upper case, both as whole Latin words
  (not next to an ASCII letter or digit); a Hangul particle may follow (BTC가).
- Overlapping candidates: leftmost, then longest wins; a match consumes its span.
- Lexicon terms match anywhere (Korean inflects), leftmost-longest, Latin case-insensitive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import ahocorasick

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """Lower-case ASCII only: keeps string length (str.lower() may not, e.g. 'İ')."""
    return text.translate(_ASCII_LOWER)


def _is_hangul(ch: str) -> bool:
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x3131 <= o <= 0x318E or 0x1100 <= o <= 0x11FF


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


@dataclass(frozen=True)
class Hit:
    market: str
    alias: str
    start: int
    end: int


_V = TypeVar("_V")


def _leftmost_longest(cands: list[tuple[int, int, _V]]) -> list[tuple[int, int, _V]]:
    cands.sort(key=lambda c: (c[0], -(c[1] - c[0])))
    out: list[tuple[int, int, _V]] = []
    pos = -1
    for c in cands:
        if c[0] >= pos:
            out.append(c)
            pos = c[1]
    return out


class MentionMatcher:
    def __init__(self, aliases: dict[str, Any], lexicon: dict[str, Any]) -> None:
        for name, d, keys in (("alias dictionary", aliases, ("version", "particles", "markets")),
                              ("lexicon", lexicon, ("version", "positive", "negative"))):
            missing = [k for k in keys if not isinstance(d, dict) or k not in d]
            if missing:
                raise ValueError(f"the {name} has no {', '.join(missing)}")
        self.alias_version = aliases["version"]
        self.lexicon_version = lexicon["version"]
        self.particles = frozenset(aliases["particles"])
        self._aliases = ahocorasick.Automaton()
        entries: dict[str, list[tuple[str, str, str]]] = {}
        self._by_market: dict[str, tuple[str, ...]] = {}
        for market, spec in aliases["markets"].items():
            for kind in ("ko", "names", "tickers"):
                for alias in spec.get(kind, []):
                    entries.setdefault(_ascii_lower(alias), []).append((market, alias, kind))
            self._by_market[market] = tuple(a for kind in ("ko", "names", "tickers") for a in spec.get(kind, []))
        for pattern, values in entries.items():
            self._aliases.add_word(pattern, (len(pattern), tuple(values)))
        self._aliases.make_automaton()
        self._lexicon = ahocorasick.Automaton()
        for polarity in ("positive", "negative"):
            for term in lexicon[polarity]:
                self._lexicon.add_word(_ascii_lower(term), (len(term), polarity))
        self._lexicon.make_automaton()

    # -- aliases ---------------------------------------------------------------------------------------------
    def aliases_of(self, market: str) -> tuple[str, ...]:
        """Every alias (Korean, names, tickers) of `market`; () for a market the dictionary does not know."""
        return self._by_market.get(market, ())

    def _valid(self, text: str, start: int, end: int, alias: str, kind: str) -> bool:
        before = text[start - 1] if start > 0 else " "
        after_idx = end
        if kind == "ko":
            if _is_hangul(before) or before.isalnum():
                return False
            j = after_idx
            while j < len(text) and _is_hangul(text[j]):
                j += 1
            tail = text[after_idx:j]
            return tail == "" or tail in self.particles
        if _is_ascii_alnum(before) or (after_idx < len(text) and _is_ascii_alnum(text[after_idx])):
            return False
        if kind == "tickers":
            return text[start:end] == alias
        return True

    def mentions(self, text: str) -> list[Hit]:
        if not text:
            return []
        lowered = _ascii_lower(text)
        cands: list[tuple[int, int, tuple[str, str]]] = []
        for end_idx, (length, values) in self._aliases.iter(lowered):
            start, end = end_idx - length + 1, end_idx + 1
            for market, alias, kind in values:
                if self._valid(text, start, end, alias, kind):
                    cands.append((start, end, (market, alias)))
                    break
        return [Hit(m, a, s, e) for s, e, (m, a) in _leftmost_longest(cands)]

    # -- sentiment -------------------------------------------------------------------------------------------
    def sentiment(self, text: str) -> tuple[int, int]:
        """(positive hits, negative hits)."""
        if not text:
            return 0, 0
        cands = [(e - n + 1, e + 1, pol) for e, (n, pol) in self._lexicon.iter(_ascii_lower(text))]
        pos = neg = 0
        for _, _, pol in _leftmost_longest(cands):
            if pol == "positive":
                pos += 1
            else:
                neg += 1
        return pos, neg


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("coinpulse_mentions").joinpath("data", name).read_text("utf-8"))
    return data


def _load_file(path: str | Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the mention dictionary {path}: {e}") from e
    return data


def default_aliases() -> dict[str, Any]:
    """The versioned alias dictionary shipped with the package (`data/aliases.json`)."""
    return _load("aliases.json")


def default_lexicon() -> dict[str, Any]:
    """The versioned sentiment lexicon shipped with the package (`data/lexicon.json`)."""
    return _load("lexicon.json")


@lru_cache(maxsize=1)
def default_matcher() -> MentionMatcher:
    return MentionMatcher(default_aliases(), default_lexicon())


def load_matcher(aliases_path: str | Path | None = None, lexicon_path: str | Path | None = None) -> MentionMatcher:
    """A matcher from custom dictionary files (same format); None or "" keeps the packaged file. Both default:
    the shared `default_matcher()`."""
    if not aliases_path and not lexicon_path:
        return default_matcher()
    aliases = _load_file(aliases_path) if aliases_path else default_aliases()
    lexicon = _load_file(lexicon_path) if lexicon_path else default_lexicon()
    return MentionMatcher(aliases, lexicon)
