"""A seedable generated coin-gallery community: posts and comments in Korean, with coin names and slang.

Everything is derived from one `random.Random(seed)` and a virtual clock (KST), so the same seed and the same
sequence of `advance` calls give the same site. Notices, ad rows (list and comment), deleted posts and comments,
replies, dccon and voice comments are all part of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

KST = timezone(timedelta(hours=9), "KST")

COINS = ["비트", "비트코인", "이더", "이더리움", "리플", "도지", "솔라나", "에이다", "BTC", "ETH", "XRP", "도지코인", "샌드박스", "페페"]
SLANG = ["가즈아", "떡상", "떡락", "존버", "물렸다", "익절", "손절", "풀매수", "개미털기", "세력", "김프", "나락", "불장", "하락장",
         "숏", "롱", "청산", "고점", "저점", "반감기"]
ENDINGS = ["ㅋㅋㅋ", "ㅠㅠ", "?", "!!", "ㄹㅇ", "ㅇㅈ", "...", "함", "임"]
HEADS = ["일반", "일반", "일반", "정보", "질문", "차트", "뉴스"]
NICKS = ["ㅇㅇ", "ㅇㅇ", "ㅇㅇ", "코인충", "존버맨", "개미", "비갤러", "떡상기원", "ㄱㄱ"]
MEMBERS = [("hodl_king", "호들킹"), ("satoshi77", "사토시"), ("whale01", "고래"), ("chartist", "차트쟁이")]
IPS = ["118.235", "223.38", "211.234", "39.7", "175.223", "110.70"]
DCCONS = ["가즈아", "떡상", "울음", "박수", "놀람", "하트"]


@dataclass
class Comment:
    no: int
    post_no: int
    created: datetime
    uid: str
    name: str
    ip: str
    kind: str  # text | dccon | voice | system
    text: str
    depth: int = 0
    c_no: int = 0
    deleted: bool = False


@dataclass
class Post:
    no: int
    created: datetime
    head: str
    title: str
    paragraphs: list[str]
    images: list[str]
    uid: str
    nick: str
    ip: str
    views: int = 0
    recommend: int = 0
    deleted: bool = False
    notice: bool = False
    comments: list[Comment] = field(default_factory=list)

    def reply_count(self) -> int:
        return sum(1 for c in self.comments if c.kind != "system" and not c.deleted)


@dataclass
class GallerySite:
    id: str
    kind: str
    posts: dict[int, Post] = field(default_factory=dict)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class Community:
    def __init__(self, galleries: list[tuple[str, str]], seed: int = 7, start: datetime | None = None):
        self.rng = random.Random(seed)
        self.live = False
        now = datetime.now(KST).replace(microsecond=0)
        self.clock = min(start or now, now).astimezone(KST).replace(microsecond=0)  # never a start in the future
        self.galleries = {g: GallerySite(g, k) for g, k in galleries}
        self.token = f"{self.rng.getrandbits(96):024x}"
        self.next_post = 100_000
        self.next_comment = 500_000
        for g in self.galleries.values():
            for title in ("비트코인 갤러리 이용 안내", "코인 리딩방·사기 신고 방법"):
                p = self._post(g, notice=True)
                p.title, p.head = title, "공지"
        self._no_future(now)

    # ---- generation ------------------------------------------------------------------------------------
    def tick(self, lo: int = 3, hi: int = 60) -> datetime:
        nxt = self.clock + timedelta(seconds=self.rng.randint(lo, hi))
        if self.live:  # arriving in real time: never ahead of the wall clock (unless the start already was)
            nxt = min(nxt, max(self.clock, datetime.now(KST).replace(microsecond=0)))
        self.clock = nxt
        return self.clock

    def latest(self) -> datetime:
        """The newest stamp on the site (a comment may be a second after the clock)."""
        return max([self.clock, *(x for g in self.galleries.values() for p in g.posts.values()
                                  for x in (p.created, *(c.created for c in p.comments)))])

    def _no_future(self, now: datetime) -> timedelta:
        shift = max(timedelta(0), self.latest() - now)
        if shift:
            for g in self.galleries.values():
                for p in g.posts.values():
                    p.created -= shift
                    for c in p.comments:
                        c.created -= shift
            self.clock -= shift
        return shift

    def settle(self, now: datetime | None = None) -> timedelta:
        """Move everything generated so far back in time so that nothing is stamped after the wall clock (a seeded
        start plus its initial posts may end in the future), and stamp everything from now on no later than the
        wall clock. Returns the shift."""
        shift = self._no_future((now or datetime.now(KST)).astimezone(KST).replace(microsecond=0))
        self.live = True
        return shift

    def _sentence(self) -> str:
        r = self.rng
        return f"{r.choice(COINS)} {r.choice(SLANG)} {r.choice(['진짜', '오늘', '지금', '내일', '이번엔'])} {r.choice(SLANG)}{r.choice(ENDINGS)}"

    def _author(self) -> tuple[str, str, str]:
        r = self.rng
        if r.random() < 0.3:
            uid, nick = r.choice(MEMBERS)
            return uid, nick, ""
        return "", r.choice(NICKS), r.choice(IPS)

    def _post(self, g: GallerySite, notice: bool = False) -> Post:
        r = self.rng
        self.next_post += r.choice([1, 1, 1, 2, 3])  # numbers skip where posts were never shown
        uid, nick, ip = ("", "운영자", "") if notice else self._author()
        images = [f"https://dcimg8.dcinside.co.kr/viewimage.php?id=3dafdf21&no={self.next_post}{i}" for i in range(r.choice([0, 0, 1, 2]))]
        p = Post(
            no=self.next_post, created=self.tick(), head=r.choice(HEADS),
            title=f"{r.choice(COINS)} {r.choice(SLANG)} {r.choice(ENDINGS)}",
            paragraphs=[self._sentence() for _ in range(r.randint(1, 4))], images=images,
            uid=uid, nick=nick, ip=ip, views=r.randint(1, 300), recommend=r.randint(0, 5), notice=notice,
        )
        g.posts[p.no] = p
        return p

    def _comment(self, p: Post) -> Comment:
        r = self.rng
        self.next_comment += 1
        created = max(self.tick(1, 30), p.created + timedelta(seconds=1))
        if self.live:  # a second after its post, unless that is after the wall clock
            created = min(created, max(p.created, datetime.now(KST).replace(microsecond=0)))
        roll = r.random()
        if roll < 0.05:
            c = Comment(self.next_comment, p.no, created, "", "관리자", "", "system", "광고 | 코인 시세 알림 앱 설치하기")
        else:
            uid, name, ip = self._author()
            if roll < 0.17:
                kind, text = "dccon", r.choice(DCCONS)
            elif roll < 0.22:
                kind, text = "voice", ""
            else:
                extra = r.choice(["& 추매", "<존버>", '"ㄹㅇ"', ""])
                kind, text = "text", f"{self._sentence()} {extra}".strip()
            c = Comment(self.next_comment, p.no, created, uid, name, ip, kind, text)
            live = [x for x in p.comments if x.depth == 0 and x.kind != "system"]
            if live and r.random() < 0.25:
                c.depth, c.c_no = 1, r.choice(live).no
        p.comments.append(c)
        return c

    def live_posts(self, gallery: str) -> list[Post]:
        return [p for p in self.galleries[gallery].posts.values() if not p.deleted and not p.notice]

    def advance(self, gallery: str | None = None, posts: int = 0, comments: int = 0, delete_posts: int = 0,
                delete_comments: int = 0, recent: int = 30) -> dict[str, list[int]]:
        """Add posts, then comments on recent live posts, then delete; returns the numbers touched."""
        g = self.galleries[gallery or next(iter(self.galleries))]
        out: dict[str, list[int]] = {"posts": [], "comments": [], "deleted_posts": [], "deleted_comments": []}
        for _ in range(posts):
            out["posts"].append(self._post(g).no)
        for _ in range(comments):
            pool = sorted(self.live_posts(g.id), key=lambda p: p.no)[-recent:]
            if pool:
                out["comments"].append(self._comment(self.rng.choice(pool)).no)
        for _ in range(delete_posts):
            pool = sorted(self.live_posts(g.id), key=lambda p: p.no)[-recent:]
            if pool:
                p = self.rng.choice(pool)
                p.deleted = True
                out["deleted_posts"].append(p.no)
        for _ in range(delete_comments):
            pool = [c for p in sorted(self.live_posts(g.id), key=lambda p: p.no)[-recent:] for c in p.comments
                    if not c.deleted and c.kind != "system"]
            if pool:
                c = self.rng.choice(pool)
                c.deleted = True
                out["deleted_comments"].append(c.no)
        return out

    # ---- what a perfect crawler would have ---------------------------------------------------------------
    def snapshot(self) -> dict:
        out = {}
        for g in self.galleries.values():
            posts = []
            for p in sorted(g.posts.values(), key=lambda p: p.no):
                if p.notice:
                    continue
                posts.append({
                    "post_no": p.no, "title": p.title, "head": p.head, "body": "\n".join(p.paragraphs),
                    "images": p.images, "created_at_ms": to_ms(p.created), "deleted": p.deleted,
                    "reply_count": p.reply_count(), "author": {"uid": p.uid, "nick": p.nick, "ip": p.ip},
                    "comments": [
                        {"comment_no": c.no, "parent_no": c.c_no if c.depth else None, "kind": c.kind, "text": c.text,
                         "created_at_ms": to_ms(c.created), "deleted": c.deleted,
                         "author": {"uid": c.uid, "nick": c.name, "ip": c.ip}}
                        for c in p.comments if c.kind != "system"
                    ],
                })
            out[g.id] = {"kind": g.kind, "posts": posts, "notices": [p.no for p in g.posts.values() if p.notice]}
        return out
