"""Whole cycles of the gallery spider in-process (no network, no Kafka): a site whose comment answers carry mistyped
fields, or whose pages of one post keep failing (HTTP 5xx, timeouts, after Scrapy's retries). The post does not stop
its cycle, is retried a bounded number of cycles and then given up, and every cycle with dead letters says so in its
dc.crawl-run record."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest
from coinpulse_common.topics import DC_COMMENT, DC_CRAWL_RUN, DC_POST
from coinpulse_crawl_dc.config import CrawlSettings
from coinpulse_crawl_dc.gallery import Gallery
from coinpulse_crawl_dc.pipelines import KafkaPipeline
from coinpulse_crawl_dc.spiders.gallery import POST_ATTEMPTS, GallerySpider
from coinpulse_crawl_dc.state import StateStore
from prometheus_client import REGISTRY
from scrapy.http import Request, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import TimeoutError as TwistedTimeout
from twisted.python.failure import Failure

pytestmark = pytest.mark.unit
BASE = "http://site.test"


def list_row(no: int, replies: int) -> str:
    return (f'<tr class="ub-content us-post" data-no="{no}" data-type="icon_txt"><td class="gall_num">{no}</td>'
            f'<td class="gall_subject">일반</td><td class="gall_tit"><a href="#">제목 {no}</a>'
            f'<a class="reply_numbox"><span class="reply_num">[{replies}]</span></a></td>'
            f'<td class="gall_writer" data-nick="ㅇㅇ" data-uid="" data-ip="1.2"></td>'
            f'<td class="gall_date" title="2026-01-05 09:00:00">09:00</td><td class="gall_count">5</td>'
            f'<td class="gall_recommend">0</td></tr>')


def view_page(no: int) -> str:
    return ('<html><body><header><span class="title_headtext">[일반]</span>'
            f'<span class="title_subject">제목 {no}</span>'
            '<div class="gall_writer" data-nick="ㅇㅇ" data-uid="" data-ip="1.2"></div>'
            '<span class="gall_date" title="2026-01-05 09:00:00"></span><span class="gall_count">조회 5</span>'
            f'</header><div class="gallview_contents"><div class="write_div">본문 {no}</div></div>'
            f'<input name="e_s_n_o" value="tok{no}"></body></html>')


def comment(n: int, **fields) -> dict:
    return {"no": str(n), "user_id": "", "name": "ㅇㅇ", "ip": "118.235.*.*", "reg_date": "01.05 09:15:00",
            "vr_type": "", "voice": None, "c_no": 0, "depth": 0, "del_yn": "N", "is_delete": "0", "memo": "가즈아",
            **fields}


class Site:
    """Post 102 has a comment answer that does not parse (set `poison`); post 101 is fine."""

    def __init__(self, poison: dict, failing: dict[tuple[str, int], int | Exception] | None = None,
                 pages: list[list[int]] | None = None):
        self.poison = poison
        self.failing = failing or {}  # (view|comment, post_no) → the status (after retries) or exception it ends with
        self.pages = pages or [[102, 101]]  # the list pages, newest first (post 102 has 2 replies, the others 1)
        self.comment_requests: list[int] = []
        self.view_requests: list[int] = []

    def answer(self, req: Request) -> str | int | Exception:
        u = urlparse(req.url)
        if "/lists/" in u.path:
            page = int(parse_qs(u.query)["page"][0])
            rows = self.pages[page - 1] if page <= len(self.pages) else []
            return f"<table><tbody>{''.join(list_row(no, 2 if no == 102 else 1) for no in rows)}</tbody></table>"
        if "/view/" in u.path:
            no = int(parse_qs(u.query)["no"][0])
            self.view_requests.append(no)
            return self.failing.get(("view", no), view_page(no))
        no = int(parse_qs(req.body.decode())["no"][0])
        self.comment_requests.append(no)
        if ("comment", no) in self.failing:
            return self.failing[("comment", no)]
        if no == 102:
            return json.dumps({"total_cnt": "2", "comments": [comment(1021), comment(1022)], "pagination": "",
                               **self.poison})
        return json.dumps({"total_cnt": "1", "comments": [comment(no * 10 + 1)], "pagination": ""})


class FakeSink:
    def __init__(self):
        self.sent: list[tuple[str, str, dict]] = []
        self.dead: list[str] = []

    def begin(self):
        pass

    def send(self, base_topic, key, value):
        self.sent.append((base_topic, key, value))

    def dead_letter(self, reason, payload, *, source, key, context=None):
        self.dead.append(reason)

    def commit(self):
        pass


def run_cycle(site: Site, store: StateStore) -> FakeSink:
    """One cycle through the spider's callbacks and the real item pipeline, requests answered by `site`."""
    cfg = CrawlSettings(dc_base_url=BASE, dc_list_num=30, dc_backfill_pages=1, dc_recent_pages=1)
    sink = FakeSink()
    spider = GallerySpider(gallery=Gallery("g"), cfg=cfg, store=store, sink=sink)
    crawler = SimpleNamespace(spider=spider, signals=SimpleNamespace(connect=lambda *a, **k: None),
                              stats=SimpleNamespace(get_value=lambda *a: 0))
    pipeline = KafkaPipeline(crawler)
    pipeline.open_spider()
    queue = [spider.list_request(1)]
    while queue:
        req = queue.pop(0)
        answer = site.answer(req)
        if isinstance(answer, str):
            out = req.callback(TextResponse(req.url, body=answer.encode(), encoding="utf-8", request=req))
        else:  # what reaches the errback once Scrapy's retries gave up: HttpError for a status, else the exception
            err = answer if isinstance(answer, Exception) else HttpError(
                TextResponse(req.url, status=answer, body=b"server error", request=req), "Ignoring non-200 response")
            failure = Failure(err)
            failure.request = req
            out = req.errback(failure)
        for item in out:
            if isinstance(item, Request):
                queue.append(item)
            else:
                pipeline.process_item(item)
    pipeline.spider_closed(spider, "finished")
    return sink


def topic(sink: FakeSink, base: str) -> list[tuple[str, dict]]:
    return [(k, v) for t, k, v in sink.sent if t == base]


POISON = [
    {"comments": [comment(1021, name=5), comment(1022)]},  # per comment: a mistyped nickname
    {"comments": [comment(1021, memo=["x"]), comment(1022)]},
    {"comments": [comment(1021, reg_date=20260105), comment(1022)]},
    {"comments": [comment(1021, depth="x", c_no={}), comment(1022)]},
    {"comments": [comment(1021, no=2**64 - 1), comment(1022)]},
    {"comments": [comment(1021, ip=["1.2"]), comment(1022)]},
    {"comments": ["1021", comment(1022)]},
]


@pytest.mark.parametrize("poison", POISON, ids=lambda p: json.dumps(p["comments"][0], ensure_ascii=False)[:60])
def test_a_mistyped_comment_is_dead_lettered_its_post_and_the_cycle_complete(poison, tmp_path):
    store = StateStore(tmp_path / "s.db")
    sink = run_cycle(Site(poison), store)
    comments = {k for k, _ in topic(sink, DC_COMMENT)}
    assert comments == {"g/101/1011", "g/102/1022"}  # the good comment of the poisoned post too
    assert {k for k, _ in topic(sink, DC_POST)} == {"g/101", "g/102"}
    assert len(sink.dead) == 1 and sink.dead[0].startswith(("bad_field: post 102", "missing_field: post 102"))
    [(_, run)] = topic(sink, DC_CRAWL_RUN)
    assert run["status"] == "degraded" and run["dead_letters"] == 1 and "1 dead letters" in run["reason"]
    assert store.watermark("g") == 102  # nothing blocks the gallery
    site = Site(poison)
    again = run_cycle(site, store)  # a bad comment is not worth a fetch every cycle: the post is done
    assert site.comment_requests == [] and topic(again, DC_CRAWL_RUN)[0][1]["status"] == "ok"


PAGE_POISON = [{"total_cnt": [2]}, {"comments": {"0": comment(1021)}}, {"pagination": 3}, {"total_cnt": True}]


@pytest.mark.parametrize("poison", PAGE_POISON, ids=lambda p: json.dumps(p)[:40])
def test_an_answer_that_does_not_parse_is_retried_a_bounded_number_of_cycles_then_given_up(poison, tmp_path):
    store = StateStore(tmp_path / "s.db")
    runs, fetched = [], []
    given_up = given_up_count("parse")
    for _ in range(POST_ATTEMPTS + 2):
        site = Site(poison)
        sink = run_cycle(site, store)
        runs.append(topic(sink, DC_CRAWL_RUN)[0][1])
        fetched.append(102 in site.comment_requests)
        assert {k for k, _ in topic(sink, DC_COMMENT)} <= {"g/101/1011"}
        assert all(r.startswith(("bad_field: post 102", "given_up: post 102")) for r in sink.dead), sink.dead
        assert store.watermark("g") == 102
    assert fetched == [True] * POST_ATTEMPTS + [False, False]
    assert [r["status"] for r in runs] == ["degraded"] * POST_ATTEMPTS + ["ok", "ok"]
    assert [r["skipped_posts"] for r in runs] == [0] * (POST_ATTEMPTS - 1) + [1, 0, 0]
    assert runs[POST_ATTEMPTS - 1]["dead_letters"] == 2  # the answer, and the post given up
    assert "1 posts given up" in runs[POST_ATTEMPTS - 1]["reason"]
    assert store.posts("g", 102, 102)[102].reply_count == 2  # planned again only when its reply count moves
    assert given_up_count("parse") == given_up + 1


def test_a_post_that_parses_again_starts_its_attempts_afresh(tmp_path):
    store = StateStore(tmp_path / "s.db")
    run_cycle(Site({"total_cnt": [2]}), store)
    assert store.posts("g", 102, 102)[102].attempts == 1
    sink = run_cycle(Site({}), store)
    assert {k for k, _ in topic(sink, DC_COMMENT)} == {"g/102/1021", "g/102/1022"}
    assert store.posts("g", 102, 102)[102].attempts == 0 and topic(sink, DC_CRAWL_RUN)[0][1]["status"] == "ok"


def test_a_state_file_from_before_attempts_is_upgraded(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "s.db")
    db.executescript("CREATE TABLE post (gallery TEXT NOT NULL, post_no INTEGER NOT NULL, reply_count INTEGER NOT "
                     "NULL, deleted INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (gallery, post_no));"
                     "INSERT INTO post VALUES ('g', 5, 1, 0, '{}');")
    db.close()
    assert StateStore(tmp_path / "s.db").posts("g", 0, 10)[5].attempts == 0


@pytest.mark.parametrize("where,error,cause", [
    ("view", 503, "HTTP 503"),
    ("view", TwistedTimeout("Getting http://site.test/ took longer than 30.0 seconds."), "TimeoutError"),
    ("comment", 500, "HTTP 500"),
], ids=["view-503", "view-timeout", "comment-500"])
def test_a_post_whose_requests_keep_failing_is_retried_a_bounded_number_of_cycles_then_given_up(
        where, error, cause, tmp_path):
    store = StateStore(tmp_path / "s.db")
    runs, fetched, dead = [], [], []
    given_up = given_up_count("request")
    for _ in range(POST_ATTEMPTS + 2):
        site = Site({}, failing={(where, 102): error})
        sink = run_cycle(site, store)
        runs.append(topic(sink, DC_CRAWL_RUN)[0][1])
        fetched.append(102 in (site.view_requests if where == "view" else site.comment_requests))
        dead.append(sink.dead)
        assert {k for k, _ in topic(sink, DC_POST)} <= {"g/101", "g/102"}
        assert store.watermark("g") == 102  # the broken post blocks nothing
    # fetched in POST_ATTEMPTS cycles in a row, then given up: no request for it any more
    assert fetched == [True] * POST_ATTEMPTS + [False, False]
    assert dead[:POST_ATTEMPTS - 1] == [[]] * (POST_ATTEMPTS - 1) and dead[POST_ATTEMPTS:] == [[], []]
    [letter] = dead[POST_ATTEMPTS - 1]
    assert letter.startswith("given_up: post 102") and f"failed in {POST_ATTEMPTS} cycles in a row" in letter
    assert cause in letter and "site.test" in letter, letter  # the last status / exception, and where
    assert [r["skipped_posts"] for r in runs] == [0] * (POST_ATTEMPTS - 1) + [1, 0, 0]
    assert [r["status"] for r in runs] == ["ok"] * (POST_ATTEMPTS - 1) + ["degraded", "ok", "ok"]
    assert "1 of them after failed requests" in runs[POST_ATTEMPTS - 1]["reason"]
    assert all(r["errors"] >= 1 for r in runs[:POST_ATTEMPTS])
    assert store.posts("g", 102, 102)[102].attempts == 0  # planned again only when its reply count moves
    assert given_up_count("request") == given_up + 1


def given_up_count(cause: str) -> float:
    return REGISTRY.get_sample_value("dc_crawl_given_up_posts_total", {"gallery": "g", "cause": cause}) or 0.0


def test_a_post_whose_request_failed_once_is_complete_the_next_cycle(tmp_path):
    store = StateStore(tmp_path / "s.db")
    first = run_cycle(Site({}, failing={("view", 102): 500}), store)
    assert store.posts("g", 102, 102)[102].attempts == 1 and first.dead == []
    assert dict(topic(first, DC_POST))["g/102"]["body"] is None  # what the list showed, until the page comes
    sink = run_cycle(Site({}), store)
    assert dict(topic(sink, DC_POST))["g/102"]["body"] == "본문 102"
    assert {k for k, _ in topic(sink, DC_COMMENT)} == {"g/102/1021", "g/102/1022"}
    assert store.posts("g", 102, 102)[102].attempts == 0 and topic(sink, DC_CRAWL_RUN)[0][1]["status"] == "ok"



# the gallery grows by two posts a cycle; with one watched page the walk stops at the watermark, so a post left
# incomplete is listed in the next cycle and then scrolls below the listed range
GROWING = [[[102, 101]], [[104, 103], [102, 101]], [[106, 105], [104, 103]], [[108, 107], [106, 105]]]


def test_an_incomplete_post_that_scrolled_below_the_listed_pages_is_still_completed(tmp_path):
    store = StateStore(tmp_path / "s.db")
    fetched, sinks = [], []
    for cycle, pages in enumerate(GROWING[:3]):
        site = Site({}, failing={("comment", 102): 500} if cycle < 2 else {}, pages=pages)
        sinks.append(run_cycle(site, store))
        fetched.append(102 in site.comment_requests)
    assert fetched == [True, True, True]  # the third cycle lists 103..106 only, and still fetches 102
    assert {k for k, _ in topic(sinks[2], DC_COMMENT)} == {"g/102/1021", "g/102/1022", "g/105/1051", "g/106/1061"}
    assert dict(topic(sinks[2], DC_POST))["g/102"]["reply_count"] == 2  # the count the list showed last
    assert store.posts("g", 102, 102)[102].reply_count == 2 and store.posts("g", 102, 102)[102].attempts == 0
    site = Site({}, pages=GROWING[3])
    run_cycle(site, store)
    assert 102 not in site.view_requests  # complete now: no more fetches


def test_an_incomplete_post_below_the_listed_pages_is_given_up_with_a_dead_letter(tmp_path):
    store = StateStore(tmp_path / "s.db")
    runs, fetched = [], []
    for pages in GROWING:
        site = Site({}, failing={("comment", 102): 500}, pages=pages)
        sink = run_cycle(site, store)
        runs.append((topic(sink, DC_CRAWL_RUN)[0][1], sink.dead))
        fetched.append(102 in site.comment_requests)
    assert fetched == [True] * POST_ATTEMPTS + [False]
    run, dead = runs[POST_ATTEMPTS - 1]
    assert run["skipped_posts"] == 1 and run["status"] == "degraded"
    assert [d for d in dead if d.startswith("given_up: post 102")], dead
    assert store.posts("g", 102, 102)[102].reply_count == 2  # given up: not planned again


def test_the_state_keeps_incomplete_posts_when_it_forgets_old_ones(tmp_path):
    from coinpulse_crawl_dc.state import INCOMPLETE, PostState, StateDelta

    store = StateStore(tmp_path / "s.db")
    posts = {1: PostState(INCOMPLETE, False, {"reply_count": 3}, 1), 2: PostState(0, False, {}), 3: PostState(1, False, {})}
    store.apply("g", StateDelta(posts=posts, comments={(1, 11): False, (2, 21): False}), 0, keep_posts=1)
    assert set(store.posts("g", 0, 10)) == {1, 3}
    assert store.comments("g", 1) == {11: False} and store.comments("g", 2) == {}
    assert set(store.incomplete_posts("g", below=3)) == {1}
