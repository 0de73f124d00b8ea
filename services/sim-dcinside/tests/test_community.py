import json
from datetime import datetime

import pytest
from coinpulse_sim_dcinside import render
from coinpulse_sim_dcinside.community import KST, Community

pytestmark = pytest.mark.unit


def make(seed: int = 5) -> Community:
    c = Community([("g", "normal")], seed=seed, start=datetime(2025, 12, 31, 23, 30, tzinfo=KST))
    c.advance("g", posts=30, comments=120)
    return c


def test_same_seed_same_site():
    assert make().snapshot() == make().snapshot()


def test_community_has_every_edge_case_kind():
    c = make()
    c.advance("g", delete_posts=1, delete_comments=1)
    posts = c.snapshot()["g"]["posts"]
    kinds = {cm["kind"] for p in posts for cm in p["comments"]}
    assert kinds >= {"text", "dccon", "voice"}
    assert any(p["deleted"] for p in posts) and any(cm["parent_no"] for p in posts for cm in p["comments"])
    assert any(cm.kind == "system" for p in c.galleries["g"].posts.values() for cm in p.comments)


def test_comment_pages_and_yearless_dates():
    c = make()
    p = max(c.live_posts("g"), key=lambda p: len(p.comments))
    doc = json.loads(render.comment_json(c, p, 1, 2))
    assert "viewComments(2" in doc["pagination"]
    assert all(len(x["reg_date"].split(" ")[0].split(".")) in (2, 3) for x in doc["comments"])


def test_list_page_has_notices_ad_and_posts_newest_first():
    c = make()
    html = render.list_page(c, "g", 1, 30)
    assert 'data-type="icon_notice"' in html and ">AD<" in html
    nos = [p.no for p in c.live_posts("g")]
    assert html.index(f'data-no="{max(nos)}"') < html.index(f'data-no="{min(nos)}"')
