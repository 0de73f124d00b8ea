import dataclasses
import json

import pytest
from coinpulse_crawl_dc.parsers import parse_list

pytestmark = pytest.mark.unit
URL = "https://gall.dcinside.com/board/lists/?id=bitcoins_new1&page=1"


def test_rows_match_the_expected_items(page):
    got = [dataclasses.asdict(r) for r in parse_list(page("list_normal.html"), URL).rows]
    assert got == json.loads(page("list_normal.expected.json"))


def test_notice_survey_and_ad_rows_are_skipped_and_counted(page):
    p = parse_list(page("list_normal.html"), URL)
    assert p.skipped == 3
    assert 2101 not in {r.post_no for r in p.rows}


def test_a_normal_page_raises_no_alarm(page):
    assert parse_list(page("list_normal.html"), URL).alarms == []


def test_reply_count_reads_the_first_number_of_n_slash_m(page):
    rows = {r.post_no: r for r in parse_list(page("list_normal.html"), URL).rows}
    assert rows[15230872].reply_count == 12


def test_post_without_reply_box_has_zero_replies_and_dash_views(page):
    rows = {r.post_no: r for r in parse_list(page("list_normal.html"), URL).rows}
    assert (rows[15230869].reply_count, rows[15230869].views) == (0, 0)


def test_list_time_is_kst_converted_to_utc(page):
    rows = {r.post_no: r for r in parse_list(page("list_normal.html"), URL).rows}
    assert rows[15230869].created_ms == 1767538799000  # 2026-01-04 23:59:59 KST = 14:59:59 UTC


def test_markup_change_that_yields_zero_rows_is_an_alarm(page):
    p = parse_list(page("list_markup_changed.html"), URL)
    assert p.rows == []
    assert [a.kind for a in p.alarms] == ["list_empty"]
    assert p.alarms[0].url == URL


def test_empty_board_is_not_an_alarm(page):
    p = parse_list(page("list_empty_board.html"), URL)
    assert (p.rows, p.alarms, p.empty_board) == ([], [], True)


def test_row_missing_its_date_is_an_alarm_and_the_others_parse(page):
    p = parse_list(page("list_missing_date.html"), URL)
    assert [r.post_no for r in p.rows] == [15230872, 15230869]
    assert len(p.alarms) == 1 and p.alarms[0].kind == "missing_field"
    assert "15230871" in p.alarms[0].detail and "gall_date" in p.alarms[0].detail
    assert 'data-no="15230871"' in p.alarms[0].fragment
