import pytest
from coinpulse_dcinside import DeletedView, ParseAlarm, ViewPage, parse_view

pytestmark = pytest.mark.unit
URL = "https://gall.dcinside.com/board/view/?id=bitcoins_new1&no=15230872"


@pytest.fixture
def view(page) -> ViewPage:
    v = parse_view(page("view_normal.html"), URL)
    assert isinstance(v, ViewPage)
    return v


def test_header_fields(view):
    assert (view.title, view.head, view.nick, view.uid, view.ip) == ("비트 1억 찍고 떡락 각 ㅋㅋ", "일반", "ㅇㅇ", None, "118.235")


def test_date_is_kst_converted_to_utc(view):
    assert view.created_ms == 1767571953000


def test_counts(view):
    assert (view.views, view.recommend, view.nonrecommend) == (1205, 3, 1)


def test_comment_token(view):
    assert view.token == "3eabc219ebdd65fe3eef85e7"


def test_body_is_complete_text_without_scripts_styles_iframes_and_ads(view):
    assert view.body == "오늘 비트 1억 찍었다가 바로 떡락함\n김프 6% 실화냐?\n다들 존버 가즈아\n리플은 <관망> & 이더 익절"


def test_image_urls_kept_in_order_lazy_images_by_their_real_url(view):
    assert view.images == [
        "https://dcimg8.dcinside.co.kr/viewimage.php?id=3dafdf21&no=24b0d769e1d32ca73",
        "https://dcimg8.dcinside.co.kr/viewimage.php?id=3dafdf21&no=24b0d769e1d32ca74",
    ]


def test_deleted_post_alert_page_is_recognised(page):
    v = parse_view(page("view_deleted_alert.html"), URL)
    assert isinstance(v, DeletedView) and "삭제" in v.reason


def test_missing_title_is_an_alarm_with_the_url(variant):
    with pytest.raises(ParseAlarm) as e:
        parse_view(variant("view_markup_changed"), URL)
    assert e.value.alarm.kind == "missing_field" and e.value.alarm.url == URL and "title_subject" in e.value.alarm.detail


def test_missing_token_parses_with_token_none(variant):
    v = parse_view(variant("view_no_token"), URL)
    assert isinstance(v, ViewPage) and v.token is None


def test_derived_view_variants_differ_from_the_normal_page_only_where_intended(variant_changes):
    assert variant_changes("view_markup_changed") == [
        (['      <span class="title_subject">비트 1억 찍고 떡락 각 ㅋㅋ</span>'],
         ['      <span class="subject_title">비트 1억 찍고 떡락 각 ㅋㅋ</span>'])]
    assert variant_changes("view_no_token") == [
        (['<input type="hidden" name="e_s_n_o" id="e_s_n_o" value="3eabc219ebdd65fe3eef85e7">'], [])]
