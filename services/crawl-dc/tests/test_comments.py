import pytest
from coinpulse_dcinside import ParseAlarm, parse_comments
from coinpulse_dcinside.comments import max_page
from coinpulse_dcinside.timeutil import parse_kst

pytestmark = pytest.mark.unit
URL = "https://gall.dcinside.com/board/comment/"
POST_MS = parse_kst("2025-12-31 23:50:00")


@pytest.fixture
def p1(page):
    return parse_comments(page("comments_page1.json"), 15230872, POST_MS, URL)


def by_no(p):
    return {c.comment_no: c for c in p.comments}


def test_real_2018_response_parses_all_four_comments(page):
    p = parse_comments(page("comment_response_2018.json"), 1132, parse_kst("2018-09-16 19:00:00"), URL)
    assert [c.comment_no for c in p.comments] == [3996, 3997, 3998, 3999]
    assert p.total == 4  # total_cnt arrives as the string "4"
    assert p.comments[0].uid == "lchbest10" and p.comments[1].ip == "220.127.*.*"


def test_date_with_year_is_read_as_is(p1):
    assert by_no(p1)[88001].created_ms == parse_kst("2025-12-31 23:58:10")


def test_date_without_year_after_new_year_takes_the_next_year(p1):
    assert by_no(p1)[88002].created_ms == parse_kst("2026-01-05 09:15:00")


def test_dccon_is_recognised_with_its_alt_text(p1):
    c = by_no(p1)[88003]
    assert (c.kind, c.text, c.uid) == ("dccon", "가즈아", "hodl_king")


def test_voice_comment_is_recognised_with_empty_text(p1):
    assert (by_no(p1)[88004].kind, by_no(p1)[88004].text) == ("voice", "")


def test_reply_points_at_its_parent_comment(p1):
    assert by_no(p1)[88005].parent_no == 88002
    assert by_no(p1)[88002].parent_no is None


def test_deleted_comment_is_kept_and_flagged(p1):
    assert by_no(p1)[88006].deleted is True


def test_admin_ad_row_is_skipped_and_counted(p1):
    assert 88007 not in by_no(p1) and p1.skipped_system == 1


def test_memo_html_becomes_text_with_lines_and_entities(p1):
    assert by_no(p1)[88002].text == "ㄹㅇ 떡락 각 & 손절각\nㅋㅋ"


def test_script_in_memo_is_removed(p1):
    assert by_no(p1)[88008].text == "리플 간다"


def test_pagination_tells_there_is_a_second_page(p1, page):
    assert p1.max_page == 2
    p2 = parse_comments(page("comments_page2.json"), 15230872, POST_MS, URL)
    assert [c.comment_no for c in p2.comments] == [88009] and p2.max_page == 2


def test_pagination_next_block_link_counts():
    assert max_page("<em>1</em><a href=\"javascript:viewComments(2,'D')\">2</a>"
                    "<a href=\"javascript:viewComments(11,'D')\" class='page_next'>다음</a>") == 11


def test_post_without_comments_gives_no_rows_and_no_alarm(page):
    p = parse_comments(page("comments_empty.json"), 1, POST_MS, URL)
    assert (p.comments, p.alarms, p.total) == ([], [], 0)


def test_comment_missing_reg_date_is_an_alarm_and_the_others_parse(page):
    p = parse_comments(page("comments_missing_field.json"), 15230872, POST_MS, URL)
    assert [c.comment_no for c in p.comments] == [88010]
    assert len(p.alarms) == 1 and p.alarms[0].url == URL and "88011" in p.alarms[0].fragment


def test_html_error_page_instead_of_json_is_an_alarm(page):
    with pytest.raises(ParseAlarm) as e:
        parse_comments(page("comments_error_page.html"), 15230872, POST_MS, URL)
    assert e.value.alarm.kind == "bad_json"
