"""What parsers share: alarms and markup helpers (lxml)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import lxml.html
from lxml.html import HtmlElement


@dataclass(frozen=True)
class Alarm:
    """Something the parser relies on is missing, or a page that should have rows has none.

    Never a quiet success: the spider counts it (metric), logs it with the URL and dead-letters the fragment.
    """

    kind: str  # list_empty | missing_field | bad_json | ...
    url: str
    detail: str
    fragment: str = ""


class ParseAlarm(Exception):
    def __init__(self, alarm: Alarm):
        super().__init__(f"{alarm.kind} at {alarm.url}: {alarm.detail}")
        self.alarm = alarm


class BadField(ValueError):
    """A field of untrusted input has the wrong type or a value out of range (alarm kind `bad_field`)."""


INT32 = (-(2**31), 2**31 - 1)  # Avro int: views, recommend, reply_count
LONG = (-(2**63), 2**63 - 1)  # Avro long: post and comment numbers
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also takes "²" and friends, which int() refuses


def show(v: object) -> str:
    """A value for a reason text: short, and safe for integers too long to print."""
    if isinstance(v, int) and v.bit_length() > 128:
        return f"<{v.bit_length()}-bit integer>"
    return repr(v)[:40]


def type_name(v: object) -> str:
    return "null" if v is None else type(v).__name__


def opt_str(doc: dict[str, Any], key: str) -> str | None:
    """A string field that may be absent or null."""
    v = doc.get(key)
    if v is None or isinstance(v, str):
        return v
    raise BadField(f"{key} is {type_name(v)}, not a string")


def scalar(doc: dict[str, Any], key: str) -> str | int | float | bool | None:
    """A flag the site sends as a string, a number or a boolean; never a list or an object."""
    v = doc.get(key)
    if v is None or isinstance(v, str | int | float):  # bool is an int
        return v
    raise BadField(f"{key} is {type_name(v)}, not a scalar")


def int_field(v: object, what: str, bounds: tuple[int, int] = LONG, *, default: int | None = None) -> int | None:
    """An integer sent as a JSON number or a string of ASCII digits; `default` when null or empty; BadField for
    anything else (booleans, lists, objects, floats, text, values outside `bounds`)."""
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise BadField(f"{what} is {type_name(v)}, not an integer")
    if isinstance(v, str):
        if not _DIGITS.fullmatch(v.strip()):
            raise BadField(f"{what} {show(v)} is not an integer")
        v = int(v.strip())
    if not bounds[0] <= v <= bounds[1]:
        raise BadField(f"{what} {show(v)} is out of range")
    return v


def in_range(v: int, what: str, bounds: tuple[int, int] = INT32) -> int:
    if not bounds[0] <= v <= bounds[1]:
        raise BadField(f"{what} {show(v)} is out of range")
    return v


def has_class(cls: str) -> str:
    """XPath predicate body: the element's class list contains `cls`."""
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {cls} ')"


_PARSER = lxml.html.HTMLParser(encoding="utf-8")


def parse_html(text: str | bytes) -> HtmlElement:
    """The site serves UTF-8; say so, or libxml2 falls back to Latin-1 on pages without a meta charset."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return lxml.html.fromstring(text or b"<html></html>", parser=_PARSER)


_INT = re.compile(r"-?[0-9][0-9,]*")


def to_int(text: str | None, default: int = 0, bounds: tuple[int, int] = INT32, what: str = "number") -> int:
    """The first number in a text ("조회 1,205" -> 1205); BadField when it does not fit `bounds`."""
    m = _INT.search(text or "")
    if not m:
        return default
    digits = m.group(0).replace(",", "")
    if len(digits) > 20:
        raise BadField(f"{what} of {len(digits)} digits is out of range")
    return in_range(int(digits), what, bounds)


_DROP_TAGS = {"script", "style", "iframe", "noscript", "object", "embed", "form", "button", "input"}
_AD_CLASS = re.compile(r"(?:^|[\s_-])(ad|ads|adv|advert|sponsor|banner|dcappfooter|powerlink)(?:$|[\s_-])", re.I)
_BLOCK_TAGS = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"}
_WS = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")


def _is_ad(el: HtmlElement) -> bool:
    cls = el.get("class") or ""
    ident = el.get("id") or ""
    return bool(_AD_CLASS.search(cls) or _AD_CLASS.search(ident))


def clean_text(root: HtmlElement) -> tuple[str, list[str]]:
    """Text of a content block without scripts, styles, iframes and ad blocks; image URLs in document order.

    Line structure is kept (`<br>` and block elements break lines); runs of blanks collapse; empty lines go.
    """
    parts: list[str] = []
    images: list[str] = []

    def walk(el: HtmlElement) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in _DROP_TAGS or (tag and _is_ad(el)):
            if el.tail:
                parts.append(el.tail)
            return
        if tag == "br":
            parts.append("\n")
        elif tag == "img":
            src = el.get("data-original") or el.get("src")
            if src:
                images.append(src.strip())
        block = tag in _BLOCK_TAGS
        if block:
            parts.append("\n")
        if tag and el.text:
            parts.append(el.text)
        for child in el:
            walk(child)
        if block:
            parts.append("\n")
        if el.tail and el is not root:
            parts.append(el.tail)

    walk(root)
    lines = (_WS.sub(" ", ln).strip() for ln in "".join(parts).split("\n"))
    return "\n".join(ln for ln in lines if ln), images


def fragment_to_text(html: str) -> str:
    """A small HTML fragment (a comment memo) → its clean text."""
    if "<" not in html and "&" not in html:
        return _WS.sub(" ", html).strip()
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    return clean_text(root)[0]
