"""PC view page (`/board/view/?id=ID&no=NO`).

Raw markup the parser reads:

- `header .title_subject` title, `header .title_headtext` head ("[일반]")
- `header .gall_writer` — `data-nick`, `data-uid`, `data-ip`; `header .gall_date[title]` KST; `header .gall_count`
  ("조회 N")
- `.gallview_contents .write_div` — the body: scripts, styles, iframes and ad blocks removed, text and image URLs kept
- `.btn_recommend_box .up_num`, `.down_num`
- `input[name=e_s_n_o]` — the token the comment endpoint wants
- a deleted post answers with an alert/redirect page instead of the view (→ `DeletedView`)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml.html import HtmlElement

from coinpulse_dcinside.base import (
    Alarm,
    BadField,
    ParseAlarm,
    clean_text,
    has_class,
    parse_html,
    to_int,
)
from coinpulse_dcinside.timeutil import parse_kst

_DELETED_MARKERS = ("삭제된 게시물", "삭제되었습니다", "존재하지 않는 게시물", "게시물이 없습니다")


@dataclass(frozen=True)
class DeletedView:
    url: str
    reason: str


@dataclass
class ViewPage:
    url: str
    title: str
    head: str | None
    nick: str
    uid: str | None
    ip: str | None
    created_ms: int
    views: int
    recommend: int
    nonrecommend: int
    body: str
    images: list[str] = field(default_factory=list)
    token: str | None = None


def _text(el: HtmlElement) -> str:
    return " ".join("".join(el.itertext()).split())


def parse_view(body: str | bytes, url: str) -> ViewPage | DeletedView:
    """Raises ParseAlarm when the page is neither a view nor a recognisable deleted-post answer, or a field it
    needs does not parse; no input makes it raise anything else."""
    try:
        return _parse_view(body, url)
    except ParseAlarm:
        raise
    except BadField as e:
        raise ParseAlarm(Alarm("bad_field", url, str(e))) from None
    except Exception as e:  # noqa: BLE001 - untrusted markup: whatever it breaks is a dead letter, never a crash
        raise ParseAlarm(Alarm("parser_error", url, f"{type(e).__name__}: {e}"[:500])) from None


def _parse_view(body: str | bytes, url: str) -> ViewPage | DeletedView:
    doc = parse_html(body)
    title_el = doc.xpath(f"//header//*[{has_class('title_subject')}]")
    if not title_el:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        for marker in _DELETED_MARKERS:
            if marker in text:
                return DeletedView(url, marker)
        raise ParseAlarm(Alarm("missing_field", url, "no header .title_subject and no deleted-post notice"))

    def need(xpath: str, what: str) -> HtmlElement:
        found = doc.xpath(xpath)
        if not found:
            raise ParseAlarm(Alarm("missing_field", url, f"no {what}"))
        return found[0]

    writer = need(f"//header//*[{has_class('gall_writer')}]", "header .gall_writer")
    if writer.get("data-nick") is None:
        raise ParseAlarm(Alarm("missing_field", url, "header .gall_writer without data-nick"))
    date = need(f"//header//*[{has_class('gall_date')}]", "header .gall_date")
    try:
        created = parse_kst(date.get("title") or _text(date))
    except ValueError as e:
        raise ParseAlarm(Alarm("missing_field", url, f"header .gall_date: {e}")) from None
    content = need(f"//*[{has_class('gallview_contents')}]//*[{has_class('write_div')}]", ".gallview_contents .write_div")
    text, images = clean_text(content)
    head = doc.xpath(f"//header//*[{has_class('title_headtext')}]")
    head_text = _text(head[0]).strip("[] ") if head else ""
    views = doc.xpath(f"//header//*[{has_class('gall_count')}]")
    up = doc.xpath(f"//*[{has_class('btn_recommend_box')}]//*[{has_class('up_num')}]")
    down = doc.xpath(f"//*[{has_class('btn_recommend_box')}]//*[{has_class('down_num')}]")
    token = doc.xpath("//input[@name='e_s_n_o']/@value")
    return ViewPage(
        url=url,
        title=_text(title_el[0]),
        head=head_text or None,
        nick=writer.get("data-nick") or "",
        uid=writer.get("data-uid") or None,
        ip=writer.get("data-ip") or None,
        created_ms=created,
        views=to_int(_text(views[0]), what="views") if views else 0,
        recommend=to_int(_text(up[0]), what="recommend") if up else 0,
        nonrecommend=to_int(_text(down[0]), what="nonrecommend") if down else 0,
        body=text,
        images=images,
        token=token[0] if token and token[0] else None,
    )
