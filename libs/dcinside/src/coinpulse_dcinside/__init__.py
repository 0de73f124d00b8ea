"""The DCInside page format, once: pure parsers (no I/O) for the list pages, the view pages and the comment
endpoint's JSON, KST dates, the pseudonymisation, and the dc.post / dc.comment / dc.raw records built from them.
The crawler (services/crawl-dc) fetches and merges; the flows rebuild from the fetched pages (`dc.raw`) with the
same code (`coinpulse_dcinside.raw`)."""

from coinpulse_dcinside.base import Alarm, ParseAlarm
from coinpulse_dcinside.comments import CommentPage, ParsedComment, parse_comments
from coinpulse_dcinside.list_page import ListPage, ListRow, parse_list
from coinpulse_dcinside.view_page import DeletedView, ViewPage, parse_view

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
