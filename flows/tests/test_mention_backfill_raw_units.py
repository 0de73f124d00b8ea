"""The mention rebuild from the fetched pages (dc.raw) without a stack: the crawler's saved pages (crawl-dc's
fixtures) as dc.raw values give the same minutes as the dc.post / dc.comment records the crawler builds from them
(with its record builders, as its `finish` and `finish_deleted` do), over two cycles, in any partition order."""

from __future__ import annotations

from collections import Counter

import pytest
from coinpulse_common.paths import repo_root
from coinpulse_dcinside import DeletedView, parse_comments, parse_list, parse_view
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_dcinside.records import comment_record, post_record, raw_record
from coinpulse_dcinside.timeutil import parse_kst
from coinpulse_flows import __main__ as cli
from coinpulse_flows import mention_backfill as mb

pytestmark = pytest.mark.unit

FIXTURES = repo_root() / "services" / "crawl-dc" / "tests" / "fixtures"
G, POST, GONE = "bitcoins_new1", 15230872, 15230871
T1, T2 = parse_kst("2026-01-05 10:00:00"), parse_kst("2026-01-05 10:05:00")  # two cycles
EVER = (0, 2**62)
PSEUDO = Pseudonymizer("k")


def page(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def cycle(t: int) -> list[dict]:
    """One cycle's fetches: the list, the view of POST and its two comment pages, the view of GONE (deleted)."""
    return [raw_record(G, "list", "https://x/lists", 200, page("list_normal.html"), t, page=1),
            raw_record(G, "view", "https://x/view", 200, page("view_normal.html"), t + 1000, POST),
            raw_record(G, "comment", "https://x/comment", 200, page("comments_page1.json"), t + 2000, POST, 1),
            raw_record(G, "comment", "https://x/comment", 200, page("comments_page2.json"), t + 3000, POST, 2),
            raw_record(G, "view", "https://x/view", 200, page("view_deleted_alert.html"), t + 4000, GONE),
            raw_record(G, "view", "https://x/view", 429, "", t + 5000, POST + 1)]  # blocked: the cycle stops


def crawler_records() -> list[mb.DocRecord]:
    """What the crawler writes to dc.post / dc.comment for the two cycles: cycle 1 every listed post (POST from its
    view with its comments, GONE from its list row: deleted at its first view, the rest from their rows: their view
    pages were not read), cycle 2 POST again (an update; its comments were seen, nothing new)."""
    rows = {r.post_no: r for r in parse_list(page("list_normal.html"), "u").rows}
    view = parse_view(page("view_normal.html"), "u")
    assert isinstance(parse_view(page("view_deleted_alert.html"), "u"), DeletedView) and GONE in rows
    comments = [c for name in ("comments_page1.json", "comments_page2.json")
                for c in parse_comments(page(name), POST, view.created_ms, "u").comments]
    posts = [post_record(G, no, row, view if no == POST else None, PSEUDO, "u", T1 + 1000, deleted=no == GONE)
             for no, row in sorted(rows.items())]
    posts.append(post_record(G, POST, rows[POST], view, PSEUDO, "u", T2 + 1000))
    out = [mb.DocRecord("post", 0, i, p["fetched_at"], p) for i, p in enumerate(posts)]
    out += [mb.DocRecord("comment", 0, i, T1 + 3000, comment_record(G, c, PSEUDO, T1 + 3000))
            for i, c in enumerate(comments)]
    return out


def minutes(records: list[mb.DocRecord]) -> dict:
    rows, _ = mb.rebuild_minutes(records, *EVER)
    return rows


def test_the_fetched_pages_give_the_minutes_of_the_crawlers_records():
    want = minutes(crawler_records())
    assert len(want) >= 3 and any(r["comments"] for r in want.values()) and any(r["posts"] for r in want.values())
    stats: Counter = Counter()
    recs = mb.raw_doc_records(cycle(T1) + cycle(T2), *EVER, stats=stats)
    assert minutes(recs) == want
    assert stats["pages:not_read"] == 2 and stats["parse_alarms"] == 0 and stats["pages:comment"] == 4
    # versions numbered by fetch time: list rows, then views, then comments of a cycle
    assert [r.offset for r in recs] == list(range(len(recs)))
    assert [r.timestamp for r in recs] == sorted(r.timestamp for r in recs)


def test_any_read_order_gives_the_same_minutes():
    """S3 reads partition after partition, Kafka interleaves them: a comment answer may come before its view."""
    pages = cycle(T1) + cycle(T2)
    want = minutes(mb.raw_doc_records(pages, *EVER))
    comments_first = sorted(pages, key=lambda p: p["kind"] != "comment")
    assert minutes(mb.raw_doc_records(comments_first, *EVER)) == want
    assert minutes(mb.raw_doc_records(list(reversed(pages)), *EVER)) == want


def test_only_pages_fetched_in_the_window_count_and_a_comment_without_its_post_is_counted():
    stats: Counter = Counter()
    recs = mb.raw_doc_records(cycle(T1) + cycle(T2), T2, T2 + 60_000, stats=stats)
    assert {r.timestamp for r in recs} >= {T2, T2 + 1000} and min(r.timestamp for r in recs) >= T2
    alone = [p for p in cycle(T1) if p["kind"] == "comment"]
    stats = Counter()
    assert mb.raw_doc_records(alone, *EVER, stats=stats) == []
    assert stats["comment_pages_without_post"] == 2


def test_trades_have_no_raw_source(capsys):
    assert cli.main(["backfill", "--from", "2025-01-01T00:00", "--to", "2025-01-01T01:00", "--source", "raw"]) == 2
    assert "upbit.raw" in capsys.readouterr().err
