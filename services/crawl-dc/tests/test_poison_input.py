"""Untrusted input with mistyped fields, field by field: every parser either parses a value it can use or turns it
into an alarm (a dead letter with its reason). Nothing raises anything but ParseAlarm, and whatever parses fits its
Avro schema."""

from __future__ import annotations

import json

import fastavro
import pytest
from coinpulse_common.avro import schema_text
from coinpulse_dcinside import ParseAlarm, ViewPage, parse_comments, parse_list, parse_view
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_dcinside.records import comment_record
from coinpulse_dcinside.timeutil import parse_kst

pytestmark = pytest.mark.unit
URL = "https://gall.dcinside.com/board/comment/"
POST_MS = parse_kst("2026-01-05 09:00:00")
COMMENT_SCHEMA = fastavro.parse_schema(json.loads(schema_text("comment")))

# one value of each JSON type; "huge" fits no Avro long (orjson keeps it an int), "huger" no 64 bits (orjson: float)
WRONG = {"str": "zz", "int": 7, "list": [1], "dict": {"a": 1}, "null": None, "bool": True, "huge": 2**64 - 1,
         "huger": 10**30}
ALL = set(WRONG)
SCALARS = {"str", "int", "null", "bool", "huge", "huger"}
# per comment field: the kinds of value the parser can use (anything else must be an alarm)
USABLE = {
    "no": {"int"},
    "name": {"str", "null"},
    "user_id": {"str", "null"},
    "ip": {"str", "null"},
    "reg_date": set(),  # "zz" is no date either
    "memo": {"str", "null"},
    "depth": {"int", "null"},
    "c_no": {"int", "null"},
    "del_yn": SCALARS,
    "is_delete": SCALARS,
    "vr_type": SCALARS,
    "voice": SCALARS,
}


def good(no: int) -> dict:
    return {"no": str(no), "parent": "1", "user_id": "", "name": "ㅇㅇ", "ip": "118.235.*.*",
            "reg_date": "01.05 09:15:00", "nicktype": "00", "vr_type": "", "voice": None, "c_no": 0, "depth": 0,
            "del_yn": "N", "is_delete": "0", "memo": "가즈아"}


def answer(comments, **doc) -> bytes:
    return json.dumps({"total_cnt": "2", "comments": comments, "pagination": "<em>1</em>", **doc}).encode()


def fits_schema(c) -> bool:
    rec = comment_record("g", c, Pseudonymizer("k"), POST_MS)
    return fastavro.validation.validate(rec, COMMENT_SCHEMA, raise_errors=True)


@pytest.mark.parametrize("value", sorted(WRONG))
@pytest.mark.parametrize("field", sorted(USABLE))
def test_a_mistyped_comment_field_is_parsed_or_dead_lettered_and_the_other_comment_parses(field, value):
    bad = good(501) | {field: WRONG[value]}
    p = parse_comments(answer([bad, good(502)]), 1, POST_MS, URL)
    assert all(fits_schema(c) for c in p.comments)
    if value in USABLE[field]:
        assert ([c.comment_no for c in p.comments], p.alarms) == ([7 if field == "no" else 501, 502], [])
        return
    assert [c.comment_no for c in p.comments] == [502]
    assert len(p.alarms) == 1
    a = p.alarms[0]
    assert a.kind in ("bad_field", "missing_field") and a.url == URL
    assert json.loads(a.fragment)["parent"] == "1"  # the comment itself travels with the alarm
    if a.kind == "bad_field":
        assert field in a.detail


@pytest.mark.parametrize("value", sorted(WRONG))
def test_a_comment_that_is_not_an_object_is_dead_lettered(value):
    p = parse_comments(answer([WRONG[value], good(502)]), 1, POST_MS, URL)
    assert [c.comment_no for c in p.comments] == [502]
    if value == "dict":  # an object, without the fields a comment needs
        assert [a.kind for a in p.alarms] == ["missing_field"]
    else:
        assert [a.kind for a in p.alarms] == ["bad_field"] and "not an object" in p.alarms[0].detail


@pytest.mark.parametrize("memo", ["a\x00b", "<", "<img class='written_dccon' alt=", "&#0;", "<" * 5000 + "x"])
def test_odd_memo_markup_parses_or_is_dead_lettered(memo):
    p = parse_comments(answer([good(501) | {"memo": memo}, good(502)]), 1, POST_MS, URL)
    assert 502 in [c.comment_no for c in p.comments]
    assert len(p.comments) + len(p.alarms) == 2 and all(fits_schema(c) for c in p.comments)


DOC_USABLE = {"total_cnt": {"int", "null"}, "comments": {"list", "null"}, "pagination": {"str", "null"}}


@pytest.mark.parametrize("value", sorted(WRONG))
@pytest.mark.parametrize("field", sorted(DOC_USABLE))
def test_a_mistyped_field_of_the_answer_itself_is_one_alarm_for_the_page(field, value):
    body = json.dumps({"total_cnt": "1", "comments": [good(501)], "pagination": "", field: WRONG[value]}).encode()
    if value in DOC_USABLE[field]:
        parse_comments(body, 1, POST_MS, URL)
        return
    with pytest.raises(ParseAlarm) as e:
        parse_comments(body, 1, POST_MS, URL)
    assert e.value.alarm.kind == "bad_field" and field in e.value.alarm.detail and e.value.alarm.url == URL


@pytest.mark.parametrize("value", sorted(WRONG))
def test_an_answer_that_is_not_an_object_is_one_alarm(value):
    with pytest.raises(ParseAlarm) as e:
        parse_comments(json.dumps(WRONG[value]).encode(), 1, POST_MS, URL)
    assert e.value.alarm.kind == "missing_field"


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"{" * 5000, b'{"total_cnt": 1e999}', b"[" * 100_000])
def test_undecodable_answers_are_one_alarm(body):
    with pytest.raises(ParseAlarm) as e:
        parse_comments(body, 1, POST_MS, URL)
    assert e.value.alarm.kind == "bad_json"


@pytest.mark.parametrize("pages", ["9" * 5000, "100001"])
def test_an_impossible_page_number_in_the_pagination_is_one_alarm(pages):
    with pytest.raises(ParseAlarm) as e:
        parse_comments(answer([good(501)], pagination=f"viewComments({pages},'D')"), 1, POST_MS, URL)
    assert e.value.alarm.kind == "bad_field" and "pagination" in e.value.alarm.detail


# ---- list and view pages: the numbers in their markup -----------------------------------------------------------

def list_row(no: str, views: str = "5", reply: str = "[2]", recommend: str = "0") -> str:
    return (f'<tr class="ub-content us-post" data-no="{no}" data-type="icon_txt"><td class="gall_num">{no}</td>'
            f'<td class="gall_subject">일반</td><td class="gall_tit"><a href="#">제목 {no}</a>'
            f'<a class="reply_numbox"><span class="reply_num">{reply}</span></a></td>'
            f'<td class="gall_writer" data-nick="ㅇㅇ" data-uid="" data-ip="1.2"></td>'
            f'<td class="gall_date" title="2026-01-05 09:00:00">09:00</td><td class="gall_count">{views}</td>'
            f'<td class="gall_recommend">{recommend}</td></tr>')


@pytest.mark.parametrize(("row", "field"), [
    (list_row("99999999999999999999"), "post number"),
    (list_row("²³"), "post number"),
    (list_row("101", views="99999999999"), "views"),
    (list_row("101", views="9" * 5000), "views"),
    (list_row("101", reply="[4294967296]"), "reply count"),
    (list_row("101", recommend="-99999999999"), "recommend"),
])
def test_a_list_row_with_a_number_out_of_range_is_dead_lettered_and_the_other_rows_parse(row, field):
    html = f"<table><tbody>{row}{list_row('100')}</tbody></table>"
    p = parse_list(html, URL)
    assert [r.post_no for r in p.rows] == [100]
    assert [a.kind for a in p.alarms] == ["bad_field"] and field in p.alarms[0].detail and "<tr" in p.alarms[0].fragment


def view_page(views: str = "조회 5", up: str = "3") -> str:
    return ('<html><body><header><span class="title_headtext">[일반]</span><span class="title_subject">제목</span>'
            '<div class="gall_writer" data-nick="ㅇㅇ" data-uid="" data-ip="1.2"></div>'
            f'<span class="gall_date" title="2026-01-05 09:00:00"></span><span class="gall_count">{views}</span>'
            '</header><div class="gallview_contents"><div class="write_div">본문</div></div>'
            f'<div class="btn_recommend_box"><p class="up_num">{up}</p></div>'
            '<input name="e_s_n_o" value="tok"></body></html>')


def test_a_normal_view_page_still_parses():
    v = parse_view(view_page(), URL)
    assert isinstance(v, ViewPage) and (v.views, v.recommend, v.token) == (5, 3, "tok")


@pytest.mark.parametrize(("page", "field"), [
    (view_page(views="조회 99999999999"), "views"),
    (view_page(up="9" * 5000), "recommend"),
])
def test_a_view_page_with_a_number_out_of_range_is_one_alarm(page, field):
    with pytest.raises(ParseAlarm) as e:
        parse_view(page, URL)
    assert e.value.alarm.kind == "bad_field" and field in e.value.alarm.detail
