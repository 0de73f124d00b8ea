"""The gallery site never stamps anything after the wall clock, and in scenario mode it carries the shared world's
community: the documents the world draws, worded so that the candle agent's matcher counts the world's mentions and
sentiment, numbered alike by any simulator that computes them, with the past on the list pages."""

import argparse
import re
from collections import Counter
from datetime import datetime, timedelta

import pytest
from coinpulse_sim_dcinside import render
from coinpulse_sim_dcinside.__main__ import build, main
from coinpulse_sim_dcinside.community import KST, Community
from coinpulse_sim_dcinside.scenario import NEUTRAL, WorldCommunity
from coinpulse_simworld import MINUTE_MS, World, load_scenario, minute_docs

pytestmark = pytest.mark.unit

SC = load_scenario("default")
T0 = 1_764_666_000_000 + 30_500  # 2025-12-02T09:00:30.5Z
GALLERIES = [("bitcoins_new1", "normal"), ("coin", "minor")]


def args(**kw) -> argparse.Namespace:
    base = dict(galleries="bitcoins_new1:normal,coin:minor", seed=7, start=None, initial_posts=120,
                initial_comments=300, comments_per_page=100, throttle=False, throttle_rps=1.0, posts_per_minute=6.0,
                comments_per_minute=20.0)
    base.update(kw)
    return argparse.Namespace(**base)


def stamps(c: Community) -> list[datetime]:
    return [x for g in c.galleries.values() for p in g.posts.values() for x in [p.created, *(m.created for m in p.comments)]]


@pytest.mark.parametrize("start", [None, (datetime.now(KST) - timedelta(hours=3)).isoformat(timespec="seconds"),
                                   (datetime.now(KST) - timedelta(minutes=5)).isoformat(timespec="seconds")])
def test_the_seeded_community_is_never_stamped_after_the_wall_clock(start):
    # two galleries x (120 posts + 300 comments) span ~4.7 h: from a start 3 h ago they used to end ~1.7 h ahead
    site = build(args(start=start))
    now = datetime.now(KST)
    ts = stamps(site.c)
    assert len(ts) > 800 and max(ts) <= now
    assert max(ts) >= now - timedelta(minutes=5), "the newest post is recent"
    site.c.advance("coin", posts=50, comments=100)  # what /sim/advance does
    assert max(stamps(site.c)) <= datetime.now(KST)


def test_a_start_in_the_future_is_refused():
    with pytest.raises(SystemExit, match="future"):
        build(args(start=(datetime.now(KST) + timedelta(hours=1)).isoformat()))
    c = Community(GALLERIES, start=datetime.now(KST) + timedelta(hours=2))
    assert c.clock <= datetime.now(KST)


def test_history_hours_needs_a_scenario():
    with pytest.raises(SystemExit, match="needs --scenario"):
        main(["--history-hours", "2"])


def world_site(now_ms: int, hours: float = 2.0) -> WorldCommunity:
    clock = {"now": now_ms}
    wc = WorldCommunity(World(SC), Community(GALLERIES, seed=SC.seed), history_hours=hours,
                        clock=lambda: clock["now"])
    wc.now = clock  # the test moves the clock
    wc.fill()
    return wc


def posts(wc: WorldCommunity) -> list:
    return [p for g in wc.c.galleries.values() for p in g.posts.values() if not p.notice]


def test_scenario_history_is_on_the_list_pages_and_nothing_is_after_now():
    wc = world_site(T0, hours=2)
    now = datetime.fromtimestamp(T0 / 1000, KST)
    ps = posts(wc)
    assert len(ps) > 100 and max(stamps(wc.c)) <= now
    assert min(p.created for p in ps) < now - timedelta(hours=1, minutes=55)
    # a crawler paging back through the list pages reaches the history's start
    seen, page = [], 1
    while True:
        html = render.list_page(wc.c, "bitcoins_new1", page, 100)
        nos = [int(n) for n in re.findall(r'class="ub-content us-post" data-no="(\d+)"', html)]
        if not nos:
            break
        seen += nos
        page += 1
    g = wc.c.galleries["bitcoins_new1"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len([p for p in g.posts.values() if not p.notice])
    assert g.posts[seen[-1]].created < now - timedelta(hours=1, minutes=55)
    # later: the documents whose time has come, and none ahead
    before = len(posts(wc)) + sum(len(p.comments) for p in posts(wc))
    wc.now["now"] = T0 + 95_000
    added = wc.fill()
    after = len(posts(wc)) + sum(len(p.comments) for p in posts(wc))
    assert added == after - before > 0
    assert max(stamps(wc.c)) <= datetime.fromtimestamp((T0 + 95_000) / 1000, KST)
    assert wc.fill() == 0, "nothing new until the clock moves"


def test_two_simulators_started_apart_show_the_same_posts():
    a = world_site(T0, hours=2)
    b = world_site(T0 - 40 * MINUTE_MS, hours=1)
    b.now["now"] = T0
    b.fill()
    cut = datetime.fromtimestamp(T0 / 1000, KST) - timedelta(minutes=30)  # both have had 30 posts since

    def view(wc):
        return {(g.id, p.no): (p.created, p.title, p.paragraphs, p.nick) for g in wc.c.galleries.values()
                for p in g.posts.values() if not p.notice and p.created >= cut}

    va, vb = view(a), view(b)
    assert va == vb and len(va) > 20


def matcher():
    from coinpulse_mentions import default_matcher  # the rules the agent will count them with

    return default_matcher()


def test_the_candle_agents_matcher_counts_the_worlds_mentions_and_polarity():
    m = matcher()
    wc = world_site(T0, hours=3)
    start_minute = (T0 - 3 * 3_600_000) // MINUTE_MS + 1
    counted: Counter = Counter()
    polar: Counter = Counter()
    for g in wc.c.galleries.values():
        for p in g.posts.values():
            if p.notice:
                continue
            texts = [(p.created, p.title + "\n" + "\n".join(p.paragraphs))]
            texts += [(c.created, c.text) for c in p.comments if c.kind == "text"]
            for created, text in texts:
                hits = m.mentions(text)
                assert len(hits) <= 1, text
                pos, neg = m.sentiment(text)
                assert pos + neg <= 1, text
                minute = int(created.timestamp() * 1000) // MINUTE_MS
                for h in hits:
                    counted[(h.market, minute)] += 1
                    polar[(h.market, minute)] += pos - neg
    expect: Counter = Counter()
    expect_polar: Counter = Counter()
    for minute in range(start_minute, T0 // MINUTE_MS):
        for d in minute_docs(wc.world, minute):
            if d.market and m.mentions(d.market.replace("KRW-", "")):  # a coin the agent's dictionary knows
                expect[(d.market, minute)] += 1
                expect_polar[(d.market, minute)] += d.polarity
    both = [k for k in expect if k[1] < T0 // MINUTE_MS]
    assert sum(expect.values()) > 500
    assert {k: counted[k] for k in both} == {k: expect[k] for k in both}
    assert {k: polar[k] for k in both} == {k: expect_polar[k] for k in both}


def test_neutral_words_name_no_coin_and_carry_no_sentiment():
    m = matcher()
    for w in NEUTRAL:
        assert not m.mentions(w) and m.sentiment(w) == (0, 0), w


def test_the_cli_scenario_site_starts_with_its_history_and_nothing_after_now():
    from coinpulse_sim_dcinside.__main__ import build_scenario

    site, wc = build_scenario(args(scenario="default", history_hours=1.0))
    now = datetime.now(KST)
    assert wc.counts["posts"] > 30 and wc.counts["over_capacity"] == 0
    assert max(stamps(site.c)) <= now and site.posts_per_minute == 0, "no random community on top of the world"
    with pytest.raises(SystemExit, match="no shipped scenario"):
        build_scenario(args(scenario="nope", history_hours=0))
