"""Every setting's variable follows the naming rule of coinpulse_common.settings: `COINPULSE_`, its service's prefix
(or a flow group), and a unit when it is a quantity. Checked over every Settings class envdoc finds."""

import re

import pytest
from coinpulse_common.settings import Settings, env_var
from coinpulse_platform import envdoc

pytestmark = pytest.mark.unit

FLOW_GROUPS = ("FLOWS_", "TIER_", "ARCHIVE_", "BACKUP_", "LINK_", "SPIKE_", "CHECK_", "BACKFILL_", "MART_", "LAG_")
SERVICE_PORTS = ("INGEST_METRICS_PORT", "CRAWL_METRICS_PORT", "CANDLE_METRICS_PORT", "SINK_METRICS_PORT")
PREFIXES: dict[str, tuple[str, ...]] = {  # class -> the prefixes (after COINPULSE_) of the variables it declares
    "Settings": ("HOST", "KAFKA_", "REGISTRY_", "CONNECT_", "POSTGRES_", "S3_", "PREFECT_", "DASHBOARD_PORT", "SIM_",
                 "PG_", "START_", "LOG_"),
    "IngestSettings": ("INGEST_",),
    "CrawlSettings": ("DC_", "CRAWL_"),
    "CandleSettings": ("CANDLE_",),
    "SinkSettings": ("SINK_",),
    "DashboardSettings": ("DASHBOARD_", *SERVICE_PORTS),  # it mirrors the services' metrics ports to probe them
    "FlowSettings": FLOW_GROUPS,
}
UNITS = ("_S", "_MS", "_MINUTES", "_HOURS", "_DAYS", "_BYTES", "_PAGES", "_ROWS", "_RECORDS", "_EVENTS", "_TRADES",
         "_POSTS", "_DUMPS", "_CONNECTIONS", "_POINTS", "_MENTIONS", "_BARS")
QUANTITY_WORDS = {"TIMEOUT", "INTERVAL", "DELAY", "BASE", "MAX", "MIN", "CAP", "WAIT", "AGE", "LATENESS", "GRACE",
                  "WINDOW", "BACKOFF", "SIZE", "TTL", "PERIOD", "CAPACITY", "KEEP", "TAIL", "SKEW", "AFTER",
                  "LOOKBACK", "REFRESH"}
UNIT_IN_TEXT = re.compile(r"\b(seconds?|minutes|hours|days|bytes|milliseconds)\b")


def _lacks_unit(var: str, description: str) -> bool:
    """A name ending in a quantity word (`_TIMEOUT`, `_MAX`, ...), or described in seconds, minutes, days or bytes,
    without a unit suffix."""
    last = var.removeprefix("COINPULSE_").rsplit("_", 1)[-1]
    return (last in QUANTITY_WORDS or bool(UNIT_IN_TEXT.search(description))) and not var.endswith(UNITS)


def _declared() -> list[tuple[type, str, str]]:
    """(class, attribute, variable) of every field, each under the class that declares it."""
    out = []
    for _where, cls in envdoc.settings_classes():
        inherited = set().union(*(getattr(b, "model_fields", {}) for b in cls.__mro__[1:]))
        out += [(cls, name, env_var(cls, name)) for name in cls.model_fields if name not in inherited]
    return out


def test_every_settings_class_has_its_prefixes_in_the_table():
    assert {cls.__name__ for _w, cls in envdoc.settings_classes()} == set(PREFIXES)


def test_every_variable_starts_with_its_service_prefix():
    wrong = [f"{cls.__name__}.{name}: {var}" for cls, name, var in _declared()
             if not var.removeprefix("COINPULSE_").startswith(PREFIXES[cls.__name__]) or not var.startswith("COINPULSE_")]
    assert not wrong, f"variables without their service prefix {PREFIXES}: {wrong}"


def test_every_quantity_has_a_unit():
    wrong = [f"{cls.__name__}.{name}: {var}" for cls, name, var in _declared()
             if _lacks_unit(var, cls.model_fields[name].description or "")]
    assert not wrong, f"quantities without a unit suffix ({', '.join(UNITS)}): {wrong}"


def test_the_check_catches_the_former_names():
    """The former unit-less and unprefixed names would fail: the rule is not vacuous."""
    for var, prefixes in (("COINPULSE_MARKETS", PREFIXES["IngestSettings"]),
                          ("COINPULSE_TRADES_TABLE", PREFIXES["FlowSettings"])):
        assert not var.removeprefix("COINPULSE_").startswith(prefixes)
    for var in ("COINPULSE_DC_TIMEOUT", "COINPULSE_DC_BACKOFF_MAX", "COINPULSE_DC_AUTOTHROTTLE_MAX_DELAY",
                "COINPULSE_LAG_MAX", "COINPULSE_DEDUPE_CAPACITY"):
        assert _lacks_unit(var, ""), var
    assert _lacks_unit("COINPULSE_START_TIMEOUT", "seconds `coinpulse up` waits")
    assert _lacks_unit("COINPULSE_DC_INTERVAL", "seconds between the starts of two crawl cycles")
    assert not _lacks_unit("COINPULSE_DC_INTERVAL_S", "seconds between the starts of two crawl cycles")
    assert not _lacks_unit("COINPULSE_DC_BASE_URL", "gallery site base URL")


def test_port_variables_are_the_real_names():
    from coinpulse_platform.isolated import port_defaults

    ports = port_defaults()
    assert ports["COINPULSE_KAFKA_PORT"] == Settings.model_fields["kafka_port"].default
    assert all(name.endswith("_PORT") for name in ports)
