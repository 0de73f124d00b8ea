"""The mention rules, once: the coin alias dictionary, the sentiment lexicon, the matcher (`matcher.py`), and what a
document says and how documents add up to a minute (`documents.py`). Used by the candle agent (mention.1m), the
flows (the mention rebuild) and the dashboard (posts about a coin). Imports nothing of ours.
"""

from coinpulse_mentions.documents import (
    MINUTE_MS,
    BadDocument,
    DocHits,
    Document,
    MinuteMentions,
    comment_document,
    contribution,
    created_ms,
    doc_hits,
    document_hits,
    mention_record,
    minute_of,
    post_document,
    replaces,
)
from coinpulse_mentions.matcher import (
    Hit,
    MentionMatcher,
    default_aliases,
    default_lexicon,
    default_matcher,
    load_matcher,
)

__all__ = [
    "MINUTE_MS",
    "BadDocument",
    "DocHits",
    "Document",
    "Hit",
    "MentionMatcher",
    "MinuteMentions",
    "comment_document",
    "contribution",
    "created_ms",
    "default_aliases",
    "default_lexicon",
    "default_matcher",
    "doc_hits",
    "document_hits",
    "load_matcher",
    "mention_record",
    "minute_of",
    "post_document",
    "replaces",
]
