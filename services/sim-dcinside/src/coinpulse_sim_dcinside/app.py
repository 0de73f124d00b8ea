"""The gallery site over HTTP (aiohttp): robots.txt, list and view pages per gallery kind, the comment endpoint,
and `/sim/*` controls for tests (state, advance, throttle, faults, request counters)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiohttp import web

from coinpulse_sim_dcinside import render
from coinpulse_sim_dcinside.community import Community

PREFIX_KIND = {"board": "normal", "mgallery": "minor", "mini": "mini"}


class Site:
    def __init__(self, community: Community, *, comments_per_page: int = 100, throttle_rps: float | None = None,
                 posts_per_minute: float = 0.0, comments_per_minute: float = 0.0):
        self.c = community
        self.comments_per_page = comments_per_page
        self.throttle_rps = throttle_rps
        self.posts_per_minute = posts_per_minute
        self.comments_per_minute = comments_per_minute
        self.requests: Counter[str] = Counter()
        self.block_after: int | None = None  # answer 429 once this many more requests were served
        self.block_status = 429
        self.faults: list[int] = []  # statuses to answer the next requests with (then normal again)
        self.failing: dict[tuple[str, int], int] = {}  # (gallery, post_no) → status of its view page, until cleared
        # malformed answers still owed: the next N view pages / comment responses of live posts come out broken
        self.malformed: Counter[str] = Counter()
        self.last_request_at = 0.0
        self.min_gap_s = float("inf")
        self.user_agents: Counter[str] = Counter()

    # ---- middleware: counting, throttling, faults ----------------------------------------------------------
    @web.middleware
    async def gate(self, request: web.Request, handler):
        if request.path.startswith("/sim/"):
            return await handler(request)
        now = time.monotonic()
        if self.last_request_at:
            self.min_gap_s = min(self.min_gap_s, now - self.last_request_at)
        self.last_request_at = now
        self.requests["total"] += 1
        self.user_agents[request.headers.get("User-Agent", "")] += 1
        if self.block_after is not None:
            if self.block_after <= 0:
                self.requests["blocked"] += 1
                return web.Response(status=self.block_status, text="Too Many Requests", headers={"Retry-After": "60"})
            self.block_after -= 1
        if self.throttle_rps and self.requests["total"] > 1 and self.min_gap_s < 1.0 / self.throttle_rps:
            self.requests["throttled"] += 1
            self.min_gap_s = float("inf")
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "5"})
        if self.faults:
            self.requests["faults"] += 1
            return web.Response(status=self.faults.pop(0), text="server error")
        return await handler(request)

    # ---- site ----------------------------------------------------------------------------------------------
    async def robots(self, request: web.Request) -> web.Response:
        self.requests["robots"] += 1
        return web.Response(text=render.ROBOTS, content_type="text/plain")

    def _gallery(self, request: web.Request, gid: str | None):
        kind = PREFIX_KIND.get(request.path.strip("/").split("/")[0])
        g = self.c.galleries.get(gid or "")
        if g is None or g.kind != kind:
            raise web.HTTPFound(f"/derror/nogallery?id={gid}")
        return g

    async def lists(self, request: web.Request) -> web.Response:
        self.requests["list"] += 1
        g = self._gallery(request, request.query.get("id"))
        page = max(1, int(request.query.get("page", "1") or 1))
        list_num = int(request.query.get("list_num", "50") or 50)
        list_num = list_num if list_num in (30, 50, 100) else 50
        return web.Response(text=render.list_page(self.c, g.id, page, list_num), content_type="text/html")

    async def view(self, request: web.Request) -> web.Response:
        self.requests["view"] += 1
        g = self._gallery(request, request.query.get("id"))
        no = int(request.query.get("no", "0") or 0)
        if (g.id, no) in self.failing:  # a post whose page keeps failing (`fail_posts`)
            self.requests["failed_view"] += 1
            return web.Response(status=self.failing[(g.id, no)], text="server error")
        p = g.posts.get(no)
        back = f"{render.PREFIX[g.kind]}/lists/?id={g.id}"
        if p is None or p.deleted:
            if no % 2:  # the real site does both: a redirect, or an alert page
                raise web.HTTPFound(f"/derror/deleted/{g.id}/board")
            return web.Response(text=render.DELETED_PAGE.format(back=back), content_type="text/html")
        p.views += 1
        page = render.view_page(self.c, g.id, p)
        if self._take_malformed("view"):  # a layout change: the header block lost its class names
            page = page.replace("title_subject", "t_subj").replace("gall_writer", "g_wr")
        return web.Response(text=page, content_type="text/html")

    def _take_malformed(self, kind: str) -> bool:
        if self.malformed[kind] <= 0:
            return False
        self.malformed[kind] -= 1
        self.requests[f"malformed_{kind}"] += 1
        return True

    async def comments(self, request: web.Request) -> web.Response:
        self.requests["comment"] += 1
        form = await request.post()
        g = self.c.galleries.get(str(form.get("id", "")))
        ok = (
            g is not None
            and form.get("e_s_n_o") == self.c.token
            and request.headers.get("X-Requested-With") == "XMLHttpRequest"
            and form.get("cmt_id") == form.get("id")
            and form.get("cmt_no") == form.get("no")
        )
        if not ok:
            self.requests["comment_rejected"] += 1
            return web.Response(status=400, text="잘못된 접근입니다.")
        p = g.posts.get(int(str(form.get("no", "0")) or 0))
        if p is None or p.deleted:
            return web.json_response({"total_cnt": 0, "comment_cnt": 0, "comments": None, "pagination": ""})
        page = max(1, int(str(form.get("comment_page", "1")) or 1))
        text = render.comment_json(self.c, p, page, self.comments_per_page)
        if self._take_malformed("comment"):  # cut off mid-answer
            text = text[: len(text) // 2]
        return web.Response(text=text, content_type="application/json")

    async def deleted(self, request: web.Request) -> web.Response:
        return web.Response(text="<html><body><p>해당 게시물은 삭제되었습니다.</p></body></html>", content_type="text/html")

    # ---- controls for tests --------------------------------------------------------------------------------
    async def state(self, request: web.Request) -> web.Response:
        return web.json_response({
            "clock": self.c.clock.isoformat(), "galleries": self.c.snapshot(), "requests": dict(self.requests),
            "min_gap_s": None if self.min_gap_s == float("inf") else self.min_gap_s,
            "user_agents": dict(self.user_agents),
        })

    async def advance(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        out = self.c.advance(
            body.get("gallery"), int(body.get("posts", 0)), int(body.get("comments", 0)),
            int(body.get("delete_posts", 0)), int(body.get("delete_comments", 0)), int(body.get("recent", 30)),
        )
        return web.json_response(out)

    async def control(self, request: web.Request) -> web.Response:
        """`{"block_after": N|null, "block_status": 429, "faults": [500, 500], "malformed": {"view": N, "comment": N},
        "fail_posts": {"<gallery>/<post_no>": 500}, "reset_counters": true}`; each malformed answer served counts in
        `requests` as malformed_view/_comment, each failed view page as failed_view."""
        body = await request.json()
        if "block_after" in body:
            self.block_after = body["block_after"]
            self.block_status = int(body.get("block_status", 429))
        if "faults" in body:
            self.faults = [int(x) for x in body["faults"]]
        if "fail_posts" in body:  # {"<gallery>/<post_no>": status}: those view pages fail until replaced ({} clears)
            self.failing = {(k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1])): int(v)
                            for k, v in body["fail_posts"].items()}
        for kind, n in (body.get("malformed") or {}).items():
            if kind not in ("view", "comment"):
                raise web.HTTPBadRequest(text=f"malformed: unknown kind {kind!r} (view, comment)")
            self.malformed[kind] = int(n)
        if body.get("reset_counters"):
            self.requests.clear()
            self.user_agents.clear()
            self.min_gap_s = float("inf")
            self.last_request_at = 0.0
        return web.json_response({"block_after": self.block_after, "faults": self.faults,
                                  "malformed": dict(self.malformed),
                                  "fail_posts": {f"{g}/{no}": st for (g, no), st in self.failing.items()}})

    async def grow(self) -> None:
        """Posts and comments arriving over time (Poisson-ish, one tick a second), stamped no later than now."""
        self.c.live = True
        while True:
            await asyncio.sleep(1.0)
            rng = self.c.rng
            posts = sum(1 for _ in range(3) if rng.random() < self.posts_per_minute / 180)
            comments = sum(1 for _ in range(6) if rng.random() < self.comments_per_minute / 360)
            for g in list(self.c.galleries):
                self.c.advance(g, posts=posts, comments=comments, delete_posts=int(rng.random() < 0.002))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.gate])
        app.router.add_get("/robots.txt", self.robots)
        for prefix in ("/board", "/mgallery/board", "/mini/board"):
            app.router.add_get(f"{prefix}/lists/", self.lists)
            app.router.add_get(f"{prefix}/view/", self.view)
        app.router.add_post("/board/comment/", self.comments)
        app.router.add_get("/derror/deleted/{gid}/board", self.deleted)
        app.router.add_get("/sim/state", self.state)
        app.router.add_post("/sim/advance", self.advance)
        app.router.add_post("/sim/control", self.control)
        if self.posts_per_minute or self.comments_per_minute:
            async def start_growth(app: web.Application):
                task = asyncio.create_task(self.grow())
                yield
                task.cancel()
            app.cleanup_ctx.append(start_growth)
        return app
