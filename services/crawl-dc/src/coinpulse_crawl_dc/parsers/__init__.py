"""Pure parsers for DCInside pages (no I/O): list pages, view pages and the comment endpoint's JSON."""

from coinpulse_crawl_dc.parsers.base import Alarm, ParseAlarm
from coinpulse_crawl_dc.parsers.comments import CommentPage, ParsedComment, parse_comments
from coinpulse_crawl_dc.parsers.list_page import ListPage, ListRow, parse_list
from coinpulse_crawl_dc.parsers.view_page import DeletedView, ViewPage, parse_view

__all__ = [
    "Alarm",
    "CommentPage",
    "DeletedView",
    "ListPage",
    "ListRow",
    "ParseAlarm",
    "ParsedComment",
    "ViewPage",
    "parse_comments",
    "parse_list",
    "parse_view",
]
