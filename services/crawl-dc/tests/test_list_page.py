import dataclasses
import json

import pytest
from coinpulse_dcinside import parse_list

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


def test_markup_change_that_yields_zero_rows_is_an_alarm(variant):
    p = parse_list(variant("list_markup_changed"), URL)
    assert p.rows == []
    assert [a.kind for a in p.alarms] == ["list_empty"]
    assert p.alarms[0].url == URL


def test_empty_board_is_not_an_alarm(variant):
    p = parse_list(variant("list_empty_board"), URL)
    assert (p.rows, p.alarms, p.empty_board) == ([], [], True)


def test_row_missing_its_date_is_an_alarm_and_the_others_parse(variant):
    p = parse_list(variant("list_missing_date"), URL)
    assert [r.post_no for r in p.rows] == [15230872, 15230869]
    assert len(p.alarms) == 1 and p.alarms[0].kind == "missing_field"
    assert "15230871" in p.alarms[0].detail and "gall_date" in p.alarms[0].detail
    assert 'data-no="15230871"' in p.alarms[0].fragment


def test_derived_list_variants_differ_from_the_normal_page_only_where_intended(page, variant_changes):
    assert variant_changes("list_markup_changed") == [
        ([f'<tr class="ub-content us-post" data-no="{no}" data-type="{kind}" >'],
         [f'<tr class="ub-post" data-no="{no}" data-type="{kind}" >'])
        for no, kind in [(15230872, "icon_txt"), (15230871, "icon_pic"), (15230869, "icon_txt")]]
    assert variant_changes("list_missing_date") == [
        (['  <td class="gall_date" title="2026-01-05 09:10:02">09:10</td>'], ['  <td class="gall_date">09:10</td>'])]
    ((gone, added),) = variant_changes("list_empty_board")
    body = page("list_normal.html").decode().splitlines()
    assert gone == body[body.index('<tbody class="listwrap2 ">'):body.index("</tbody>") + 1]
    assert added == ['<tbody class="listwrap2 "><tr><td colspan="7" class="empty">등록된 게시물이 없습니다.</td></tr></tbody>']
