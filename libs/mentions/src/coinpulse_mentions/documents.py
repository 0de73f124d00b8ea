"""What one gallery document says about the markets, and how documents add up to a market's minute: the rules of
`mention.1m`, used by the candle agent's streaming engine and by the flows' mention rebuild alike.

- A document is a post or a comment (decoded `dc.post` / `dc.comment` values, schemas/post.avsc, comment.avsc):
  - post: id `p:<gallery>/<post_no>`, text = title, then a newline and the body when the body is non-empty;
    it "has a body" when the body is not null (the view page was fetched);
  - comment: id `c:<gallery>/<post_no>/<comment_no>`, text = the comment text; always "has a body".
  Its event time is `created_at` (epoch ms, or the aware datetime fastavro returns); its minute is that time
  floored to the UTC minute (`minute_of`).
- `doc_hits`: per market the text mentions, the number of alias matches and the lexicon hits of the whole text
  (positive, negative; the same for every market the document mentions), tagged with the version (the offset of
  the source record; -1 unordered).
- Within one (market, minute) a document counts once, with one version (`replaces`): a later version replaces the
  counted one unless it says the same, or it has no body while the counted one had, or it is not newer (a version
  at or below the counted version's offset: a replay of older records).
- A minute's record (`mention_record`): mentions, positive, negative = sums over its documents; posts and comments
  = how many of its documents are of each kind; sentiment = (positive - negative) / max(1, positive + negative).

`MinuteMentions` applies these rules from scratch, with no clock (no grace, no lateness): what the agent ends with
when nothing arrived too late, which is what a rebuild from the documents must give.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from coinpulse_mentions.matcher import MentionMatcher

MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadDocument(ValueError):
    """A post or comment record that cannot be read as a document (missing or mistyped field)."""


class Document(NamedTuple):
    doc: str  # "p:<gallery>/<post_no>" or "c:<gallery>/<post_no>/<comment_no>"
    ts: int  # created_at, epoch ms
    text: str
    has_body: bool


class DocHits(NamedTuple):
    doc: str  # "p:<gallery>/<post_no>" or "c:<gallery>/<post_no>/<comment_no>"
    market: str
    ts: int  # created_at, epoch ms
    mentions: int
    positive: int
    negative: int
    has_body: bool  # posts: the body was known; comments: always True
    version: int = -1  # offset of the source record (post or comment topic); -1: unordered

    @property
    def is_post(self) -> bool:
        return self.doc.startswith("p:")

    def to_json(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_json(cls, v: list[Any]) -> DocHits:
        return cls(*v)


def created_ms(value: Any) -> int:
    """Epoch milliseconds from an int or an aware datetime (fastavro's timestamp-millis), exactly (no float)."""
    if isinstance(value, bool):
        raise BadDocument("created_at is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise BadDocument("created_at is a naive datetime")
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise BadDocument(f"created_at of type {type(value).__name__}")


def post_document(rec: Mapping[str, Any]) -> Document:
    """The document of a decoded `dc.post` value."""
    try:
        doc = f"p:{rec['gallery']}/{rec['post_no']}"
        title, body = rec["title"], rec.get("body")
        ts = created_ms(rec["created_at"])
    except KeyError as e:
        raise BadDocument(f"post without {e}") from None
    if not isinstance(title, str) or not (body is None or isinstance(body, str)):
        raise BadDocument("post title or body is not a string")
    return Document(doc, ts, title + ("\n" + body if body else ""), body is not None)


def comment_document(rec: Mapping[str, Any]) -> Document:
    """The document of a decoded `dc.comment` value."""
    try:
        doc = f"c:{rec['gallery']}/{rec['post_no']}/{rec['comment_no']}"
        text = rec["text"] or ""
        ts = created_ms(rec["created_at"])
    except KeyError as e:
        raise BadDocument(f"comment without {e}") from None
    if not isinstance(text, str):
        raise BadDocument("comment text is not a string")
    return Document(doc, ts, text, True)


def minute_of(ts: int) -> int:
    """The start (epoch ms) of the UTC minute `ts` falls in: the mention bucket of a document."""
    return ts - ts % MINUTE_MS


def doc_hits(matcher: MentionMatcher, doc: str, ts: int, text: str, has_body: bool, version: int = -1) -> list[DocHits]:
    """What one document version says about each market it mentions."""
    hits = matcher.mentions(text)
    if not hits:
        return []
    pos, neg = matcher.sentiment(text)
    counts: dict[str, int] = {}
    for h in hits:
        counts[h.market] = counts.get(h.market, 0) + 1
    return [DocHits(doc, m, ts, n, pos, neg, has_body, version) for m, n in sorted(counts.items())]


def document_hits(matcher: MentionMatcher, d: Document, version: int = -1) -> list[DocHits]:
    return doc_hits(matcher, d.doc, d.ts, d.text, d.has_body, version)


# a document's contribution to a minute: (mentions, positive, negative, has_body, version)
Contribution = tuple[int, int, int, bool, int]


def contribution(h: DocHits) -> Contribution:
    return (h.mentions, h.positive, h.negative, h.has_body, h.version)


def replaces(old: Contribution | None, new: Contribution) -> bool:
    """Whether the version `new` replaces the counted contribution `old` of the same document in the same minute."""
    if old is None:
        return True
    return not (old[:4] == new[:4] or (old[3] and not new[3]) or 0 <= new[4] <= old[4])


def mention_record(market: str, start: int, docs: Mapping[str, Contribution], revision: int) -> dict[str, Any]:
    """The `mention.1m` record (without emitted_at) of one market's minute from its documents' contributions."""
    mentions = sum(d[0] for d in docs.values())
    positive = sum(d[1] for d in docs.values())
    negative = sum(d[2] for d in docs.values())
    posts = sum(1 for k in docs if k.startswith("p:"))
    return {
        "market": market,
        "bucket_start": start,
        "mentions": mentions,
        "posts": posts,
        "comments": len(docs) - posts,
        "positive": positive,
        "negative": negative,
        "sentiment": (positive - negative) / max(1, positive + negative),
        "revision": revision,
    }


class MinuteMentions:
    """Mention minutes from scratch: document hits given in source order (per document, oldest version first),
    no clock. `records()` is every (market, minute) with at least one mentioning document."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, int], dict[str, Contribution]] = {}
        self.accepted = self.unchanged = 0

    def add(self, h: DocHits) -> bool:
        """Count one document version; False when it changes nothing (`replaces`)."""
        docs = self.docs.setdefault((h.market, minute_of(h.ts)), {})
        new = contribution(h)
        if not replaces(docs.get(h.doc), new):
            self.unchanged += 1
            return False
        docs[h.doc] = new
        self.accepted += 1
        return True

    def add_all(self, hits: Iterable[DocHits]) -> MinuteMentions:
        for h in hits:
            self.add(h)
        return self

    def records(self, revision: int = 0) -> dict[tuple[str, int], dict[str, Any]]:
        return {key: mention_record(key[0], key[1], docs, revision) for key, docs in sorted(self.docs.items())}
