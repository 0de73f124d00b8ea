"""The environment-name mechanism of `coinpulse_common.settings`: new names, deprecated old names, keyword construction."""

import warnings

import pytest
from coinpulse_common.settings import DEPRECATED_ENV, Settings, deprecated_env_vars, env_name, env_var
from pydantic import Field
from structlog.testing import capture_logs

pytestmark = pytest.mark.unit

NEW, OLD = "COINPULSE_TESTSVC_WIDGET_COUNT", "COINPULSE_WIDGET_COUNT"


class _Svc(Settings):
    widget_count: int = Field(3, description="widgets", validation_alias=env_name(NEW, old=OLD))
    plain_s: float = Field(1.0, description="a field keeping its derived name")


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in (NEW, OLD, "COINPULSE_START_TIMEOUT", "COINPULSE_START_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)


def _build(**kwargs):
    with warnings.catch_warnings(record=True) as caught, capture_logs() as logs:
        warnings.simplefilter("always")
        s = _Svc(**kwargs)
    deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    return s, deprecations, [e for e in logs if e["event"] == "settings.deprecated_env"]


def test_the_new_name_is_read_without_a_warning(monkeypatch):
    monkeypatch.setenv(NEW, "7")
    s, deprecations, logs = _build()
    assert s.widget_count == 7
    assert deprecations == [] and logs == []


def test_the_old_name_is_read_with_one_warning_naming_the_new_one(monkeypatch):
    monkeypatch.setenv(OLD, "5")
    s, deprecations, logs = _build()
    assert s.widget_count == 5
    assert deprecations == [f"{OLD} is deprecated: use {NEW} (the old name is accepted until the next release)"]
    assert len(logs) == 1 and logs[0]["old"] == OLD and logs[0]["new"] == NEW and logs[0]["log_level"] == "warning"


def test_the_old_name_in_the_dotenv_file_is_read_and_warned(tmp_path):
    (tmp_path / ".env").write_text(f"{OLD}=9\n")
    s, deprecations, _ = _build()
    assert s.widget_count == 9
    assert len(deprecations) == 1 and NEW in deprecations[0]


def test_both_set_the_new_one_wins_and_the_warning_says_so(monkeypatch):
    monkeypatch.setenv(OLD, "5")
    monkeypatch.setenv(NEW, "8")
    s, deprecations, logs = _build()
    assert s.widget_count == 8
    assert len(deprecations) == 1 and f"both are set, {NEW} wins and {OLD} is ignored" in deprecations[0]
    assert len(logs) == 1


def test_keyword_construction_by_attribute_name(monkeypatch):
    monkeypatch.setenv(NEW, "8")
    s, deprecations, _ = _build(widget_count=11, plain_s=2.5)
    assert (s.widget_count, s.plain_s) == (11, 2.5)
    assert deprecations == []


def test_a_field_without_env_name_keeps_coinpulse_field(monkeypatch):
    monkeypatch.setenv("COINPULSE_PLAIN_S", "4.5")
    s, _, _ = _build()
    assert s.plain_s == 4.5
    assert env_var(_Svc, "plain_s") == "COINPULSE_PLAIN_S"
    assert env_var(_Svc, "widget_count") == NEW
    assert deprecated_env_vars(_Svc, "widget_count") == [OLD] and DEPRECATED_ENV[OLD] == NEW


def test_a_fallback_is_read_without_a_warning(monkeypatch):
    class _WithFallback(Settings):
        tool_dir: str = Field("/x", validation_alias=env_name("COINPULSE_TESTSVC_TOOL_DIR",
                                                               fallback="COINPULSE_TESTSHARED_TOOL_DIR"))

    monkeypatch.setenv("COINPULSE_TESTSHARED_TOOL_DIR", "/shared")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert _WithFallback().tool_dir == "/shared"
    monkeypatch.setenv("COINPULSE_TESTSVC_TOOL_DIR", "/own")
    assert _WithFallback().tool_dir == "/own"
    assert deprecated_env_vars(_WithFallback, "tool_dir") == []


def test_the_base_start_timeout_has_its_unit_and_the_old_name_still_works(monkeypatch):
    assert env_var(Settings, "start_timeout") == "COINPULSE_START_TIMEOUT_S"
    monkeypatch.setenv("COINPULSE_START_TIMEOUT", "12")
    with pytest.warns(DeprecationWarning, match="use COINPULSE_START_TIMEOUT_S"):
        assert Settings().start_timeout == 12.0


def test_names_must_carry_the_prefix():
    with pytest.raises(ValueError, match="starts with COINPULSE_"):
        env_name("INGEST_MARKETS", old="COINPULSE_MARKETS")
    with pytest.raises(ValueError, match="starts with COINPULSE_"):
        env_name("COINPULSE_INGEST_MARKETS", old="MARKETS")
