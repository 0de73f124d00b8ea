"""Time, pseudonyms, gallery URLs, settings, backoff and the state store (pure logic)."""

import os

import pytest
from coinpulse_crawl_dc.config import CrawlSettings
from coinpulse_crawl_dc.gallery import Gallery, parse_galleries
from coinpulse_crawl_dc.middlewares import backoff_s
from coinpulse_crawl_dc.state import PostState, StateDelta, StateStore
from coinpulse_dcinside.pseudonym import Pseudonymizer, ip_prefix
from coinpulse_dcinside.timeutil import parse_comment_date, parse_kst

pytestmark = pytest.mark.unit


def test_kst_is_nine_hours_ahead_of_utc():
    assert parse_kst("2026-01-01 09:00:00") == 1767225600000  # 2026-01-01T00:00:00Z


def test_comment_without_year_in_the_posts_year():
    assert parse_comment_date("03.01 10:00:00", parse_kst("2026-02-28 10:00:00")) == parse_kst("2026-03-01 10:00:00")


def test_comment_without_year_on_a_december_post_rolls_into_january():
    assert parse_comment_date("01.01 00:00:05", parse_kst("2025-12-31 23:59:00")) == parse_kst("2026-01-01 00:00:05")


def test_comment_in_the_same_minute_as_the_post_does_not_roll_a_year():
    assert parse_comment_date("12.31 23:59:00", parse_kst("2025-12-31 23:59:30")) == parse_kst("2025-12-31 23:59:00")


def test_unreadable_date_raises():
    with pytest.raises(ValueError):
        parse_comment_date("어제", parse_kst("2026-01-01 00:00:00"))


def test_ip_forms_share_one_prefix():
    assert ip_prefix("118.235") == ip_prefix("(118.235)") == ip_prefix("118.235.*.*") == "118.235"


def test_pseudonyms_are_keyed_and_never_the_clear_value():
    a, b = Pseudonymizer("k1"), Pseudonymizer("k2")
    h = a.author(uid=None, nick="ㅇㅇ", ip="118.235")
    assert h != b.author(uid=None, nick="ㅇㅇ", ip="118.235")
    assert "118" not in h and a.ip("118.235.*.*") == a.ip("118.235") != a.ip("223.38")


def test_member_is_identified_by_uid_whatever_the_nickname():
    p = Pseudonymizer("k")
    assert p.author(uid="whale01", nick="고래", ip=None) == p.author(uid="whale01", nick="다른닉", ip="1.2")


def test_gallery_kinds_build_their_urls():
    base = "https://gall.dcinside.com"
    assert Gallery("coin", "minor").list_url(base, 2, 100) == f"{base}/mgallery/board/lists/?id=coin&page=2&list_num=100"
    assert Gallery("bitcoins_new1").view_url(base, 5) == f"{base}/board/view/?id=bitcoins_new1&no=5"
    assert Gallery("coin", "minor").comment_form(5, "tok", 2)["_GALLTYPE_"] == "M"


def test_galleries_are_configuration():
    assert parse_galleries("bitcoins_new1:normal, coin:minor,x") == [
        Gallery("bitcoins_new1"), Gallery("coin", "minor"), Gallery("x")]
    with pytest.raises(ValueError):
        parse_galleries("coin:huge")


LOCAL = "http://127.0.0.1:28091"


def test_dev_hash_key_refused_outside_dev():
    with pytest.raises(ValueError, match="COINPULSE_DC_ENV=prod"):
        CrawlSettings(env="prod", dc_base_url=LOCAL).check()
    CrawlSettings(env="prod", dc_hash_key="s3cret").check()


@pytest.mark.parametrize("url", ["https://gall.dcinside.com", "http://10.0.0.5:28091", "http://sim-dcinside:28091"])
def test_the_built_in_key_is_refused_for_any_target_but_the_local_simulator(url):
    with pytest.raises(ValueError, match="COINPULSE_DC_HASH_KEY is the built-in dev key.*not the local simulator"):
        CrawlSettings(env="dev", dc_base_url=url).check()
    with pytest.raises(ValueError, match="placeholder from .env.example"):
        CrawlSettings(env="dev", dc_base_url=url, dc_hash_key="change-me-long-random-secret").check()
    CrawlSettings(env="dev", dc_base_url=url, dc_hash_key="s3cret").check()


@pytest.mark.parametrize("url", [LOCAL, "http://localhost:28091", "http://[::1]:28091"])
def test_the_built_in_key_is_allowed_for_the_local_simulator_in_dev(url):
    CrawlSettings(env="dev", dc_base_url=url).check()


def test_backoff_doubles_and_is_capped():
    assert [backoff_s(n, 2.0, 10.0) for n in range(4)] == [2.0, 4.0, 8.0, 10.0]


def test_state_is_empty_then_holds_what_was_applied(tmp_path):
    s = StateStore(tmp_path / "s.db")
    assert s.watermark("g") is None
    rec = {"post_no": 10, "title": "t"}
    s.apply("g", StateDelta(10, {10: PostState(2, False, rec)}, {(10, 100): False}), 1, 100)
    s2 = StateStore(tmp_path / "s.db")  # survives a restart
    assert s2.watermark("g") == 10
    assert s2.posts("g", 1, 20) == {10: PostState(2, False, rec)}
    assert s2.comments("g", 10) == {100: False}


def test_watermark_never_moves_back(tmp_path):
    s = StateStore(tmp_path / "s.db")
    s.apply("g", StateDelta(50), 1, 100)
    s.apply("g", StateDelta(40), 2, 100)
    assert s.watermark("g") == 50


def test_state_keeps_only_the_newest_posts(tmp_path):
    s = StateStore(tmp_path / "s.db")
    s.apply("g", StateDelta(None, {n: PostState(0, False, {}) for n in range(1, 11)}, {(1, 5): False}), 1, 3)
    assert sorted(s.posts("g", 0, 100)) == [8, 9, 10] and s.comments("g", 1) == {}


def test_the_crawler_will_not_start_on_a_real_site_with_the_built_in_key(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("COINPULSE_DC_")}
    r = subprocess.run([sys.executable, "-m", "coinpulse_crawl_dc", "--once"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path,  # no .env of the checkout
                       env={**env, "COINPULSE_DC_BASE_URL": "https://gall.dcinside.com"})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "COINPULSE_DC_HASH_KEY is the built-in dev key" in r.stderr and "openssl rand" in r.stderr
