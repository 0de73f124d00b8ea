"""One crawl cycle of one gallery.

1. Walk list pages newest-first until a page reaches the watermark (the newest post fully crawled), always at
   least `dc_recent_pages` pages (the window whose reply counts are watched), at most `dc_max_pages`.
2. Plan jobs: listed posts unknown to the state (new, oldest first); known posts whose reply count changed
   (update); known live posts inside the listed number range that are no longer listed (check: deleted or
   just shifted between two page fetches — the view page decides); and known posts left incomplete by an earlier
   cycle that have since scrolled below the listed range (retry: a post is never left half-crawled because newer
   posts pushed it off the watched pages; its view page stands in for the list row).
3. Run jobs one after another: view page, then every comment page. A job's records are yielded only when it is
   complete, together with its state delta (`JobDone`), so an interrupted cycle never half-emits a post.

403/429 stop the cycle (status throttled); a failed list page (after backoff retries) ends the walk, the
watermark stays; parse alarms are counted, logged with the URL and dead-lettered. A post whose view page or comment
answer does not parse, or cannot be fetched (HTTP 5xx, timeout: after Scrapy's backoff retries), is finished with
what it has and fetched again next cycle, at most `POST_ATTEMPTS` cycles in a row: then it is given up
(dead-lettered with the reason: the parse alarm, or the last status / exception; counted in `skipped_posts` and
`dc_crawl_given_up_posts_total{cause}`) and left alone until its reply count changes, so one poisonous or broken
post can neither stop a cycle nor cost every cycle a fetch forever.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import scrapy
from coinpulse_common.logging import get_logger
from coinpulse_common.topics import DC_COMMENT, DC_POST, DC_RAW
from coinpulse_dcinside import (
    Alarm,
    DeletedView,
    ListRow,
    ParseAlarm,
    ParsedComment,
    ViewPage,
    parse_comments,
    parse_list,
    parse_view,
)
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_dcinside.records import comment_key, comment_record, post_key, post_record, raw_record
from scrapy.exceptions import CloseSpider
from scrapy.http import FormRequest, Request, Response

from coinpulse_crawl_dc import metrics
from coinpulse_crawl_dc.config import CrawlSettings
from coinpulse_crawl_dc.gallery import Gallery
from coinpulse_crawl_dc.records import JobDone, Record
from coinpulse_crawl_dc.state import INCOMPLETE, PostState, StateDelta, StateStore

STOP_CODES = (403, 429)
POST_ATTEMPTS = 3  # cycles in a row a post's pages may fail (to parse, or to download) before it is given up
GONE_CODES = (301, 302, 303, 307, 308, 404, 410)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Job:
    kind: str  # new | update | check
    post_no: int
    row: ListRow | None
    known: PostState | None
    view: ViewPage | None = None
    comments: list[ParsedComment] = field(default_factory=list)
    incomplete: bool = False  # a page of this post did not parse: finish what we have, fetch it again next cycle
    attempts: int = 0  # failed attempts so far, remembered with the post (0 once it parsed or was given up)


@dataclass
class CycleReport:
    run_id: str
    started_ms: int
    status: str = "ok"
    reason: str | None = None
    new_posts: int = 0
    new_comments: int = 0
    updated_posts: int = 0
    deleted_posts: int = 0
    errors: int = 0
    alarms: int = 0
    dead_letters: int = 0
    skipped_posts: int = 0  # given up after POST_ATTEMPTS failed cycles
    given_up_requests: int = 0  # of which the last failure was a request's (not a parse)
    requests: int = 0
    pages_listed: int = 0


class GallerySpider(scrapy.Spider):
    name = "gallery"
    max_attempts = POST_ATTEMPTS

    def __init__(self, gallery: Gallery, cfg: CrawlSettings, store: StateStore, sink: Any, **kw: Any):
        super().__init__(name=f"gallery-{gallery.id}", **kw)
        self.gallery = gallery
        self.cfg = cfg
        self.store = store
        self.sink = sink
        self.base = cfg.dc_base_url
        self.pseudo = Pseudonymizer(cfg.dc_hash_key)
        self.watermark = store.watermark(gallery.id)
        self.listed: dict[int, ListRow] = {}
        self.walk_complete = False
        self.jobs: deque[Job] = deque()
        self.new_planned: set[int] = set()
        self.new_done: set[int] = set()
        self.report = CycleReport(uuid.uuid4().hex, now_ms())
        self.log = get_logger("coinpulse.crawl_dc", gallery=gallery.id, run_id=self.report.run_id)

    # ---- helpers -------------------------------------------------------------------------------------------
    def alarm(self, a: Alarm, payload: bytes | str | None = None) -> None:
        self.report.alarms += 1
        self.report.errors += 1
        self.report.dead_letters += 1
        metrics.ALARMS.labels(self.gallery.id, a.kind).inc()
        metrics.DEAD_LETTERS.labels(self.gallery.id).inc()
        self.log.error("parse_alarm", kind=a.kind, url=a.url, detail=a.detail)
        self.sink.dead_letter(
            f"{a.kind}: {a.detail}", a.fragment or payload or b"", source=a.url, key=self.gallery.id,
            context={"run_id": self.report.run_id, "kind": a.kind},
        )

    def raw(self, kind: str, response: Response, post_no: int | None = None, page: int | None = None) -> Record:
        url = response.url
        key = url
        if kind == "comment":
            key = f"{url}?id={self.gallery.id}&no={post_no}&comment_page={page}"
        body = response.text if hasattr(response, "text") else response.body.decode("utf-8", "replace")
        return Record(DC_RAW, key, raw_record(self.gallery.id, kind, url, response.status, body, now_ms(), post_no, page))

    def stop_if_blocked(self, response: Response) -> None:
        if response.status in STOP_CODES:
            self.report.status = "throttled"
            self.report.reason = f"HTTP {response.status} at {response.url}"
            self.log.warning("blocked", status=response.status, url=response.url)
            raise CloseSpider("throttled")

    def list_request(self, page: int) -> Request:
        return Request(
            self.gallery.list_url(self.base, page, self.cfg.dc_list_num),
            callback=self.parse_list,
            errback=self.on_error,
            meta={"page": page, "handle_httpstatus_list": list(STOP_CODES)},
            dont_filter=True,
        )

    # ---- 1. list walk ---------------------------------------------------------------------------------------
    async def start(self):
        self.log.info("cycle_start", watermark=self.watermark)
        yield self.list_request(1)

    def parse_list(self, response: Response) -> Iterator[Any]:
        page_no = response.meta["page"]
        yield self.raw("list", response, page=page_no)
        self.stop_if_blocked(response)
        self.report.pages_listed += 1
        page = parse_list(response.body, response.url)
        for a in page.alarms:
            self.alarm(a, response.body)
        for r in page.rows:
            self.listed.setdefault(r.post_no, r)
        if page.empty_board or not page.rows:
            self.walk_complete = not page.alarms
            yield from self.plan()
            return
        lowest = min(r.post_no for r in page.rows)
        if self.watermark is None:
            more = page_no < self.cfg.dc_backfill_pages
        else:
            more = page_no < self.cfg.dc_recent_pages or lowest > self.watermark
        if more and page_no >= self.cfg.dc_max_pages:
            self.alarm(Alarm("walk_truncated", response.url, f"watermark {self.watermark} not reached in {page_no} pages"))
            more = False
        if more:
            yield self.list_request(page_no + 1)
        else:
            self.walk_complete = True
            yield from self.plan()

    # ---- 2. plan ---------------------------------------------------------------------------------------------
    def plan(self) -> Iterator[Any]:
        if not self.listed:
            return
        lo, hi = min(self.listed), max(self.listed)
        known = self.store.posts(self.gallery.id, lo, hi)
        new = [Job("new", no, row, None) for no, row in sorted(self.listed.items()) if no not in known]
        update = [
            Job("update", no, row, known[no])
            for no, row in sorted(self.listed.items())
            if no in known and not known[no].deleted and known[no].reply_count != row.reply_count
        ]
        check = [Job("check", no, None, st) for no, st in sorted(known.items())
                 if not st.deleted and no not in self.listed and st.attempts < self.max_attempts]
        retry = [Job("update", no, None, st) for no, st in sorted(self.store.incomplete_posts(self.gallery.id, lo).items())]
        self.jobs.extend(new + update + check + retry)
        self.new_planned = {j.post_no for j in new}
        self.log.info("cycle_plan", listed=len(self.listed), new=len(new), update=len(update), check=len(check),
                      retry=len(retry))
        yield from self.next_job()

    def next_job(self) -> Iterator[Any]:
        if not self.jobs:
            return
        job = self.jobs.popleft()
        yield Request(
            self.gallery.view_url(self.base, job.post_no),
            callback=self.parse_view,
            errback=self.on_error,
            meta={"job": job, "dont_redirect": True, "handle_httpstatus_list": [*STOP_CODES, *GONE_CODES]},
            dont_filter=True,
        )

    # ---- 3. jobs ---------------------------------------------------------------------------------------------
    def parse_view(self, response: Response) -> Iterator[Any]:
        job: Job = response.meta["job"]
        yield self.raw("view", response, post_no=job.post_no)
        self.stop_if_blocked(response)
        if response.status in GONE_CODES:
            yield from self.finish_deleted(job)
            return
        try:
            view = parse_view(response.body, response.url)
        except Exception as e:  # noqa: BLE001 - ParseAlarm, or a parser bug: either way a dead letter, not a stall
            self.alarm(_alarm_of(e, response.url, job.post_no), response.body)
            yield from self.fail(job)  # a new post keeps what the list showed; the page is in dc.raw and the DLQ
            return
        if isinstance(view, DeletedView):
            yield from self.finish_deleted(job)
            return
        job.view = view
        if job.kind == "check" or (job.kind == "new" and job.row is not None and job.row.reply_count == 0):
            yield from self.finish(job)
            return
        if not view.token:
            self.alarm(Alarm("missing_field", response.url, f"post {job.post_no}: no input[name=e_s_n_o]"))
            yield from self.finish(job)
            return
        yield self.comment_request(job, view.token, 1, response.url)

    def comment_request(self, job: Job, token: str, page: int, referer: str) -> FormRequest:
        return FormRequest(
            self.gallery.comment_url(self.base),
            formdata=self.gallery.comment_form(job.post_no, token, page),
            headers={"X-Requested-With": "XMLHttpRequest", "Referer": referer},
            callback=self.parse_comments,
            errback=self.on_error,
            meta={"job": job, "page": page, "token": token, "handle_httpstatus_list": list(STOP_CODES)},
            dont_filter=True,
        )

    def parse_comments(self, response: Response) -> Iterator[Any]:
        job: Job = response.meta["job"]
        page_no = response.meta["page"]
        yield self.raw("comment", response, post_no=job.post_no, page=page_no)
        self.stop_if_blocked(response)
        assert job.view is not None
        try:
            page = parse_comments(response.body, job.post_no, job.view.created_ms, response.url)
        except Exception as e:  # noqa: BLE001 - ParseAlarm, or a parser bug: either way a dead letter, not a stall
            self.alarm(_alarm_of(e, response.url, job.post_no), response.body)
            yield from self.fail(job)
            return
        for a in page.alarms:
            self.alarm(a)
        job.comments.extend(page.comments)
        if page.comments and page_no < page.max_page:
            yield self.comment_request(job, response.meta["token"], page_no + 1, job.view.url)
        else:
            yield from self.finish(job)

    def on_error(self, failure: Any) -> Iterator[Any]:
        request = failure.request
        self.report.errors += 1
        metrics.ERRORS.labels(self.gallery.id, "request").inc()
        cause = request_failure(failure)
        self.log.error("request_failed", url=request.url, error=cause)
        if "job" in request.meta:  # finished with what it has, fetched again next cycle; bounded like a parse failure
            yield from self.fail(request.meta["job"], f"could not be fetched (last: {cause} at {request.url})")
        else:
            self.report.status = "failed"
            self.report.reason = f"list page {request.meta.get('page')} failed: {failure.value!r}"[:500]
            yield from self.plan()  # walk incomplete: the watermark will not move

    # ---- completion -------------------------------------------------------------------------------------------
    def fail(self, job: Job, failed: str | None = None) -> Iterator[Any]:
        """A page of this post did not parse (already dead-lettered), or could not be fetched (`failed` says how):
        finish it with what it has and fetch it again next cycle; the `max_attempts`-th failure in a row gives it
        up instead, with a dead letter naming the last failure."""
        attempts = (job.known.attempts if job.known is not None else 0) + 1
        give_up = attempts >= self.max_attempts
        if give_up:
            self.report.skipped_posts += 1
            self.report.given_up_requests += failed is not None
            metrics.GIVEN_UP.labels(self.gallery.id, "parse" if failed is None else "request").inc()
            self.alarm(Alarm("given_up", self.gallery.view_url(self.base, job.post_no),
                             f"post {job.post_no}: {job.kind} failed in {attempts} cycles in a row, the last time: "
                             f"{failed or 'did not parse'}; skipped until its reply count changes"[:1000]))
        if job.kind != "check" and (job.kind == "new" or job.view is not None):
            job.incomplete = not give_up
            job.attempts = 0 if give_up else attempts
            yield from self.finish(job)
            return
        # an update or check without its view: nothing to emit, the state remembers the attempt
        assert job.known is not None
        k = job.known
        if job.kind == "update" and give_up:  # stop planning it until the listed reply count moves again
            st = PostState(job.row.reply_count if job.row else _emitted_replies(k), k.deleted, k.record, 0)
        else:  # a check given up keeps its count: plan() skips it from now on
            st = PostState(k.reply_count, k.deleted, k.record, attempts)
        yield JobDone(job.post_no, job.kind, StateDelta(posts={job.post_no: st}))
        yield from self.next_job()

    def finish_deleted(self, job: Job) -> Iterator[Any]:
        t = now_ms()
        g = self.gallery.id
        if job.known is not None:
            rec = dict(job.known.record, deleted=True, fetched_at=t)
        else:
            assert job.row is not None
            rec = post_record(g, job.post_no, job.row, None, self.pseudo, self.gallery.view_url(self.base, job.post_no), t, deleted=True)
        delta = StateDelta(posts={job.post_no: PostState(rec["reply_count"], True, rec)})
        self.report.deleted_posts += 1
        metrics.DELETED_POSTS.labels(g).inc()
        if job.kind == "new":
            self.new_done.add(job.post_no)
        yield Record(DC_POST, post_key(g, job.post_no), rec)
        yield JobDone(job.post_no, job.kind, delta)
        yield from self.next_job()

    def finish(self, job: Job) -> Iterator[Any]:
        g = self.gallery.id
        t = now_ms()
        if job.kind == "check":  # still there: it only shifted between two list fetches
            yield from self.next_job()
            return
        url = self.gallery.view_url(self.base, job.post_no)
        if job.row is not None:
            replies = job.row.reply_count
        else:  # a retry below the listed range: the view page stands in for the list row
            assert job.known is not None and job.view is not None
            replies = _emitted_replies(job.known)
        rec = post_record(g, job.post_no, job.row, job.view, self.pseudo, url, t, reply_count=replies)
        # an incomplete post is remembered with an impossible reply count (INCOMPLETE), so the next cycle plans it
        # again: as an update while it is listed, as a retry once it has scrolled below the listed range
        reply_count = INCOMPLETE if job.incomplete else replies
        delta = StateDelta(posts={job.post_no: PostState(reply_count, False, rec, job.attempts)})
        seen = self.store.comments(g, job.post_no) if job.known is not None else {}
        out: list[Record] = [Record(DC_POST, post_key(g, job.post_no), rec)]
        for c in job.comments:
            if seen.get(c.comment_no) == c.deleted:
                continue
            seen[c.comment_no] = c.deleted
            delta.comments[(job.post_no, c.comment_no)] = c.deleted
            out.append(Record(DC_COMMENT, comment_key(g, job.post_no, c.comment_no), comment_record(g, c, self.pseudo, t)))
        n_comments = len(out) - 1
        self.report.new_comments += n_comments
        metrics.NEW_COMMENTS.labels(g).inc(n_comments)
        if job.kind == "new":
            self.report.new_posts += 1
            self.new_done.add(job.post_no)
            metrics.NEW_POSTS.labels(g).inc()
        else:
            self.report.updated_posts += 1
            metrics.UPDATED_POSTS.labels(g).inc()
        yield from out
        yield JobDone(job.post_no, job.kind, delta)
        yield from self.next_job()

    def final_watermark(self) -> int | None:
        """The newest listed post with nothing undone below it; None (unchanged) when the walk was incomplete."""
        if not self.walk_complete or not self.listed:
            return None
        undone = self.new_planned - self.new_done
        blocked = min(undone) if undone else None
        eligible = [no for no in self.listed if blocked is None or no < blocked]
        if not eligible:
            return None
        wm = max(eligible)
        return wm if self.watermark is None or wm > self.watermark else None


def _emitted_replies(known: PostState) -> int:
    """The reply count of the post's last emitted record (what the list showed when it was last listed)."""
    return int(known.record.get("reply_count") or 0)


def request_failure(failure: Any) -> str:
    """What a failed request ended with: `HTTP <status>` for an answer the retries gave up on, else the exception."""
    response = getattr(failure.value, "response", None)
    if response is not None and getattr(response, "status", None) is not None:
        return f"HTTP {response.status}"
    return f"{type(failure.value).__name__}: {failure.value}"[:300]


def _alarm_of(e: Exception, url: str, post_no: int) -> Alarm:
    if isinstance(e, ParseAlarm):
        return e.alarm
    return Alarm("parser_error", url, f"post {post_no}: {type(e).__name__}: {e}"[:500])
