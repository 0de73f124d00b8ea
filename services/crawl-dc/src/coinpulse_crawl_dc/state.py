"""Crawl state in SQLite under the state dir: per gallery the watermark (newest post fully crawled, with nothing
older left undone), and per recent post its reply count, deleted flag, last emitted record, comment numbers and how
many cycles in a row its pages failed to parse (`attempts`: bounded, see spiders.gallery.POST_ATTEMPTS). Only the
newest `keep_posts` posts are kept, and the incomplete ones (retried until complete or given up, wherever they are).

It is written only after the cycle's Kafka transaction has committed (see pipelines.KafkaPipeline), so a crash
before the commit leaves the state where it was and the next cycle redoes the same work.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gallery (gallery TEXT PRIMARY KEY, watermark INTEGER NOT NULL, updated_at INTEGER);
CREATE TABLE IF NOT EXISTS post (
    gallery TEXT NOT NULL, post_no INTEGER NOT NULL, reply_count INTEGER NOT NULL, deleted INTEGER NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (gallery, post_no));
CREATE TABLE IF NOT EXISTS comment (
    gallery TEXT NOT NULL, post_no INTEGER NOT NULL, comment_no INTEGER NOT NULL, deleted INTEGER NOT NULL,
    PRIMARY KEY (gallery, post_no, comment_no));
"""


INCOMPLETE = -1  # the reply count remembered for a post whose pages did not all arrive: planned again next cycle


@dataclass(frozen=True)
class PostState:
    reply_count: int
    deleted: bool
    record: dict[str, Any]
    attempts: int = 0  # cycles in a row in which a page of this post did not parse


@dataclass
class StateDelta:
    """What one cycle learned; applied atomically after Kafka acknowledged everything it emitted."""

    watermark: int | None = None
    posts: dict[int, PostState] = field(default_factory=dict)
    comments: dict[tuple[int, int], bool] = field(default_factory=dict)

    def merge(self, other: StateDelta) -> None:
        if other.watermark is not None:
            self.watermark = max(self.watermark or 0, other.watermark)
        self.posts.update(other.posts)
        self.comments.update(other.comments)


class StateStore:
    def __init__(self, path: Path | str):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(post)")}
        if "attempts" not in cols:  # a state file from before the column: every post starts with none
            self._db.execute("ALTER TABLE post ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self._db.close()

    def watermark(self, gallery: str) -> int | None:
        row = self._db.execute("SELECT watermark FROM gallery WHERE gallery=?", (gallery,)).fetchone()
        return row[0] if row else None

    def _posts(self, where: str, params: tuple[Any, ...]) -> dict[int, PostState]:
        rows = self._db.execute(
            f"SELECT post_no, reply_count, deleted, record, attempts FROM post WHERE gallery=? AND {where}", params)
        return {no: PostState(rc, bool(d), json.loads(rec), att) for no, rc, d, rec, att in rows}

    def posts(self, gallery: str, lo: int, hi: int) -> dict[int, PostState]:
        return self._posts("post_no BETWEEN ? AND ?", (gallery, lo, hi))

    def incomplete_posts(self, gallery: str, below: int) -> dict[int, PostState]:
        """Live posts older than `below` whose last cycle left them incomplete (see INCOMPLETE)."""
        return self._posts("post_no < ? AND reply_count = ? AND deleted = 0", (gallery, below, INCOMPLETE))

    def comments(self, gallery: str, post_no: int) -> dict[int, bool]:
        rows = self._db.execute(
            "SELECT comment_no, deleted FROM comment WHERE gallery=? AND post_no=?", (gallery, post_no)
        )
        return {cno: bool(d) for cno, d in rows}

    def apply(self, gallery: str, delta: StateDelta, now_ms: int, keep_posts: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if delta.watermark is not None:
                db.execute(
                    "INSERT INTO gallery VALUES (?,?,?) ON CONFLICT(gallery) DO UPDATE SET "
                    "watermark=max(watermark, excluded.watermark), updated_at=excluded.updated_at",
                    (gallery, delta.watermark, now_ms),
                )
            db.executemany(
                "INSERT OR REPLACE INTO post (gallery, post_no, reply_count, deleted, record, attempts) "
                "VALUES (?,?,?,?,?,?)",
                [(gallery, no, p.reply_count, int(p.deleted), json.dumps(p.record, ensure_ascii=False), p.attempts)
                 for no, p in delta.posts.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO comment VALUES (?,?,?,?)",
                [(gallery, no, cno, int(d)) for (no, cno), d in delta.comments.items()],
            )
            cut = db.execute(
                "SELECT post_no FROM post WHERE gallery=? ORDER BY post_no DESC LIMIT 1 OFFSET ?",
                (gallery, keep_posts),
            ).fetchone()
            if cut:  # old posts are forgotten, except the incomplete ones: those are retried until done or given up
                db.execute("DELETE FROM post WHERE gallery=? AND post_no<=? AND reply_count<>?",
                           (gallery, cut[0], INCOMPLETE))
                db.execute("DELETE FROM comment WHERE gallery=? AND post_no<=? AND post_no NOT IN "
                           "(SELECT post_no FROM post WHERE gallery=? AND post_no<=?)",
                           (gallery, cut[0], gallery, cut[0]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
