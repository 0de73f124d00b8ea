"""Avro-ready records (dicts matching schemas/post, comment, raw_page) built from parsed pages: the crawler emits
them, the flows' mention rebuild builds the same ones from the fetched pages (`coinpulse_dcinside.raw`)."""

from __future__ import annotations

from typing import Any

from coinpulse_dcinside.comments import ParsedComment
from coinpulse_dcinside.list_page import ListRow
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_dcinside.view_page import ViewPage


def post_key(gallery: str, post_no: int) -> str:
    return f"{gallery}/{post_no}"


def comment_key(gallery: str, post_no: int, comment_no: int) -> str:
    return f"{gallery}/{post_no}/{comment_no}"


def post_record(
    gallery: str, post_no: int, row: ListRow | None, view: ViewPage | None, pseudo: Pseudonymizer, url: str, now_ms: int,
    *, deleted: bool = False, reply_count: int | None = None,
) -> dict[str, Any]:
    """From the view page when there is one (title, body, author, time), else from the list row."""
    src = view or row
    if src is None:
        raise ValueError("post_record needs a list row or a view page")
    return {
        "gallery": gallery,
        "post_no": post_no,
        "title": src.title,
        "body": view.body if view else None,
        "head": (view.head if view else None) or (row.head if row else None),
        "author_hash": pseudo.author(uid=src.uid, nick=src.nick, ip=src.ip),
        "ip_hash": pseudo.ip(src.ip),
        "is_member": bool(src.uid),
        "created_at": src.created_ms,
        "views": max(view.views if view else 0, row.views if row else 0),
        "recommend": view.recommend if view else (row.recommend if row else 0),
        "reply_count": reply_count if reply_count is not None else (row.reply_count if row else 0),
        "deleted": deleted,
        "url": url,
        "fetched_at": now_ms,
        "images": list(view.images) if view else None,
    }


def comment_record(gallery: str, c: ParsedComment, pseudo: Pseudonymizer, now_ms: int) -> dict[str, Any]:
    return {
        "gallery": gallery,
        "post_no": c.post_no,
        "comment_no": c.comment_no,
        "parent_no": c.parent_no,
        "author_hash": pseudo.author(uid=c.uid, nick=c.nick, ip=c.ip),
        "ip_hash": pseudo.ip(c.ip),
        "kind": c.kind,
        "text": c.text,
        "created_at": c.created_ms,
        "deleted": c.deleted,
        "fetched_at": now_ms,
    }


def raw_record(
    gallery: str, kind: str, url: str, status: int, body: str, now_ms: int,
    post_no: int | None = None, page: int | None = None,
) -> dict[str, Any]:
    return {
        "source": "dcinside",
        "gallery": gallery,
        "kind": kind,
        "url": url,
        "status": status,
        "fetched_at": now_ms,
        "body": body,
        "post_no": post_no,
        "page": page,
    }
