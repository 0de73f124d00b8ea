"""Scenario mode (`--scenario`): the galleries carry the community of the shared simulated world (coinpulse_simworld).

Every document the world draws for a minute (`minute_docs`) becomes a post or a comment at its second, in the
gallery its slot falls in, worded with the coin's aliases once and at most one lexicon word of the document's
polarity (words of the candle agent's lexicon), so the mentions and the sentiment the agent counts are the world's.
A post carries its coin and its polarity in the title; its body is neutral (the same count whether or not the body
is known). A comment goes to one of the gallery's 30 most recent posts (a reply to one of its comments one time in
five); with no post yet, it becomes a post.

Nothing is stamped after the wall clock: `fill(now)` adds the documents of the minutes up to now whose second has
come. `history_hours` fills the past first, so the list pages go back that far. Post numbers are a function of
the minute (minutes since the scenario's epoch x 100 + the rank in the minute), comment numbers likewise (x 1000):
two simulators, or a restarted one, number the same documents the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

from coinpulse_simworld import MINUTE_MS, Doc, World, minute_docs, now_ms

from coinpulse_sim_dcinside.community import IPS, KST, MEMBERS, NICKS, Comment, Community, GallerySite, Post

POSITIVE = ["떡상", "가즈아", "풀매수", "불장", "급등", "익절", "호재", "반등"]
NEGATIVE = ["떡락", "손절", "폭락", "급락", "나락", "악재", "설거지", "물렸다"]
NEUTRAL = ["차트 보는 중", "거래량 보자", "김프 얼마임", "세력 뭐하냐", "고점 어디냐", "저점 잡을까", "반감기 언제 옴",
           "오늘 장 어떰", "눌림목인가", "횡보 중", "분봉 확인함", "호가창 봐라", "뉴스 나옴", "공시 떴냐"]
ENDINGS = ["", "", "ㅋㅋ", "ㄹㅇ", "ㅇㅈ", "...", "?", "!!"]
PARTICLES = ["", "", "", "도", "는"]
HEADS = ["일반", "일반", "일반", "정보", "질문", "차트", "뉴스"]
DCCONS = ["박수", "놀람", "하트", "울음"]
POSTS_PER_MINUTE = 100  # numbering stride: at most this many posts per gallery per minute
COMMENTS_PER_MINUTE = 1000


def _author(r: random.Random) -> tuple[str, str, str]:
    if r.random() < 0.3:
        uid, nick = r.choice(MEMBERS)
        return uid, nick, ""
    return "", r.choice(NICKS), r.choice(IPS)


def phrase(world: World, doc: Doc, r: random.Random) -> str:
    """The document's words: its coin once (if any), a neutral phrase, its one lexicon word (if any)."""
    parts = []
    if doc.market is not None:
        aliases = world.spec(doc.market).aliases
        parts.append(r.choice(aliases) + r.choice(PARTICLES))
    parts.append(r.choice(NEUTRAL))
    if doc.polarity:
        parts.append(r.choice(POSITIVE if doc.polarity > 0 else NEGATIVE))
    return " ".join(parts) + r.choice(ENDINGS)


class WorldCommunity:
    """Feeds a Community from the world, minute by minute, never past the clock."""

    def __init__(self, world: World, community: Community, history_hours: float = 0.0,
                 clock: Callable[[], int] = now_ms):
        self.world = world
        self.c = community
        self.clock = clock
        self.galleries: list[GallerySite] = list(community.galleries.values())
        self.epoch_minute = world.scenario.epoch_ms // MINUTE_MS
        start = clock() - int(history_hours * 3_600_000)
        self.minute = start // MINUTE_MS  # the next minute to fill (from its first document at or after start)
        self.start_ms = start
        self._done_in_minute = 0  # documents of `self.minute` already added
        self._docs: list[Doc] | None = None
        self.recent: dict[str, list[Post]] = {g.id: [] for g in self.galleries}
        self.posts_in_minute: dict[tuple[str, int], int] = {}
        self.comments_in_minute: dict[int, int] = {}
        self.counts = {"posts": 0, "comments": 0, "over_capacity": 0}
        self.c.live = True
        self.c.clock = datetime.fromtimestamp(start // 1000, KST)
        for g in self.galleries:  # the notices date from the history's start
            for p in g.posts.values():
                p.created = self.c.clock

    def fill(self, until_ms: int | None = None) -> int:
        """Add every document with time <= until_ms (default: now, never later) not added yet; returns how many."""
        now = self.clock()
        until = now if until_ms is None else min(until_ms, now)
        n = 0
        while self.minute * MINUTE_MS <= until:
            if self._docs is None:
                self._docs = [d for d in minute_docs(self.world, self.minute) if d.ts_ms >= self.start_ms]
            docs = self._docs
            while self._done_in_minute < len(docs) and docs[self._done_in_minute].ts_ms <= until:
                self._add(docs[self._done_in_minute])
                self._done_in_minute += 1
                n += 1
            if self._done_in_minute < len(docs) or (self.minute + 1) * MINUTE_MS > until:
                break  # the rest of this minute is still to come
            self.minute += 1
            self._docs, self._done_in_minute = None, 0
        self.c.clock = max(self.c.clock, datetime.fromtimestamp(until // 1000, KST))
        self.c.next_post = max(self.c.next_post, (self.minute - self.epoch_minute + 1) * POSTS_PER_MINUTE)
        self.c.next_comment = max(self.c.next_comment, (self.minute - self.epoch_minute + 1) * COMMENTS_PER_MINUTE)
        return n

    def _add(self, doc: Doc) -> None:
        g = self.galleries[min(int(doc.slot * len(self.galleries)), len(self.galleries) - 1)]
        r = random.Random(doc.key)
        created = datetime.fromtimestamp(doc.ts_ms // 1000, KST)
        minute = doc.ts_ms // MINUTE_MS
        recent = self.recent[g.id]
        if doc.post or not recent:
            rank = self.posts_in_minute.get((g.id, minute), 0)
            self.posts_in_minute[(g.id, minute)] = rank + 1
            if rank >= POSTS_PER_MINUTE:
                self.counts["over_capacity"] += 1
                return
            uid, nick, ip = _author(r)
            p = Post(no=(minute - self.epoch_minute) * POSTS_PER_MINUTE + rank, created=created, head=r.choice(HEADS),
                     title=phrase(self.world, doc, r),
                     paragraphs=[r.choice(NEUTRAL) + r.choice(ENDINGS) for _ in range(r.randint(1, 3))],
                     images=[], uid=uid, nick=nick, ip=ip, views=r.randint(1, 300), recommend=r.randint(0, 5))
            g.posts[p.no] = p
            recent.append(p)
            if len(recent) > 30:
                recent.pop(0)
            self.counts["posts"] += 1
            return
        p = recent[min(int(doc.pick * len(recent)), len(recent) - 1)]
        rank = self.comments_in_minute.get(minute, 0)
        self.comments_in_minute[minute] = rank + 1
        if rank >= COMMENTS_PER_MINUTE:
            self.counts["over_capacity"] += 1
            return
        uid, name, ip = _author(r)
        no = (minute - self.epoch_minute) * COMMENTS_PER_MINUTE + rank
        if doc.market is None and r.random() < 0.25:  # text-free comments name no coin
            kind, text = ("dccon", r.choice(DCCONS)) if r.random() < 0.7 else ("voice", "")
        else:
            kind, text = "text", phrase(self.world, doc, r)
        cm = Comment(no, p.no, max(created, p.created), uid, name, ip, kind, text)
        roots = [x for x in p.comments if x.depth == 0 and x.kind != "system"]
        if roots and r.random() < 0.2:
            cm.depth, cm.c_no = 1, r.choice(roots).no
        p.comments.append(cm)
        self.counts["comments"] += 1
