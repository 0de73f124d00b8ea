"""Saved pages through the parsers (hepcrawl's response_from_file habit).

Only the normal pages are saved. Each broken variant is derived from its normal page by the one change that makes
it (`VARIANTS`), so a variant can never drift from the page it is a variant of; each change fails loudly if the
normal page no longer has the markup it edits, and test_list_page / test_view_page pin the resulting diff.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _replace(text: str, old: str, new: str, count: int) -> str:
    found = text.count(old)
    assert found == count, f"expected {count}x {old!r} in the normal page, found {found}"
    return text.replace(old, new)


def _sub(text: str, pattern: str, new: str) -> str:
    out, n = re.subn(pattern, new, text, flags=re.DOTALL)
    assert n == 1, f"expected one match of {pattern!r} in the normal page, found {n}"
    return out


def list_markup_changed(html: str) -> str:
    """The site renames the post-row class: no row is recognised any more."""
    return _replace(html, '<tr class="ub-content us-post"', '<tr class="ub-post"', 3)


def list_missing_date(html: str) -> str:
    """One post row (15230871) loses the date cell's title, where the full timestamp lives."""
    return _replace(html, '<td class="gall_date" title="2026-01-05 09:10:02">', '<td class="gall_date">', 1)


def list_empty_board(html: str) -> str:
    """A board with no post at all: the list body is the site's 'no posts' row."""
    return _sub(html, r'<tbody class="listwrap2 ">\n.*?</tbody>',
                '<tbody class="listwrap2 "><tr><td colspan="7" class="empty">등록된 게시물이 없습니다.</td></tr></tbody>')


def view_markup_changed(html: str) -> str:
    """The site renames the title's class: the title is not found."""
    return _replace(html, '<span class="title_subject">', '<span class="subject_title">', 1)


def view_no_token(html: str) -> str:
    """The page lacks the hidden comment-token input."""
    return _sub(html, r'<input type="hidden" name="e_s_n_o"[^\n]*\n', "")


VARIANTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "list_markup_changed": ("list_normal.html", list_markup_changed),
    "list_missing_date": ("list_normal.html", list_missing_date),
    "list_empty_board": ("list_normal.html", list_empty_board),
    "view_markup_changed": ("view_normal.html", view_markup_changed),
    "view_no_token": ("view_normal.html", view_no_token),
}


@pytest.fixture
def page():
    def load(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return load


@pytest.fixture
def variant(page):
    """variant("list_missing_date") -> that page's bytes, derived from its normal page."""

    def derive(name: str) -> bytes:
        normal, change = VARIANTS[name]
        return change(page(normal).decode("utf-8")).encode("utf-8")

    return derive


@pytest.fixture
def variant_changes(page, variant):
    """variant_changes(name) -> the hunks where that variant differs from its normal page: (old lines, new lines)."""

    def changes(name: str) -> list[tuple[list[str], list[str]]]:
        a = page(VARIANTS[name][0]).decode("utf-8").splitlines()
        b = variant(name).decode("utf-8").splitlines()
        ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
        return [(a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]

    return changes
