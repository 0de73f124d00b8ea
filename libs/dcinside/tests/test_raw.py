"""A fetched page's records: what the crawler would build from it, and only from answers it parses."""

from __future__ import annotations

import pytest
from coinpulse_common.paths import repo_root
from coinpulse_dcinside import parse_view
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_dcinside.raw import NeedsPostTime, page_records
from coinpulse_dcinside.records import post_record, raw_record

pytestmark = pytest.mark.unit
FIXTURES = repo_root() / "services" / "crawl-dc" / "tests" / "fixtures"
P = Pseudonymizer("k")


def raw(kind: str, name: str, status: int = 200, post_no: int | None = 15230872) -> dict:
    return raw_record("g", kind, "u", status, (FIXTURES / name).read_text(encoding="utf-8"), 5, post_no)


def test_a_view_page_gives_the_crawlers_post_record():
    got = page_records(raw("view", "view_normal.html"), P, 5)
    view = parse_view((FIXTURES / "view_normal.html").read_bytes(), "u")
    assert got.posts == [post_record("g", 15230872, None, view, P, "u", 5)] and got.posts[0]["body"]


def test_list_rows_are_body_less_posts_and_a_deleted_view_gives_nothing():
    rows = page_records(raw("list", "list_normal.html", post_no=None), P, 5).posts
    assert len(rows) >= 3 and all(r["body"] is None for r in rows)
    assert page_records(raw("view", "view_deleted_alert.html"), P, 5).posts == []


def test_unparsed_answers_and_comments_without_their_posts_time():
    assert not page_records(raw("view", "view_normal.html", status=429), P, 5).read
    broken = page_records(raw("comment", "comments_error_page.html"), P, 5, post_created_ms=0)
    assert broken.comments == [] and broken.alarms
    with pytest.raises(NeedsPostTime):
        page_records(raw("comment", "comments_page1.json"), P, 5)
    assert len(page_records(raw("comment", "comments_page1.json"), P, 5, post_created_ms=0).comments) > 3
