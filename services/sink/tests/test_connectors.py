"""Connector files render with placeholders resolved from the environment or Settings, never half-rendered."""

from __future__ import annotations

import json
import re

import pytest
from coinpulse_common.paths import repo_root
from coinpulse_sink import connectors as c
from coinpulse_sink.naming import Names
from coinpulse_sink.settings import SinkSettings

pytestmark = pytest.mark.unit


@pytest.fixture
def s() -> SinkSettings:
    return SinkSettings(pg_writer_password="from-settings")


def test_env_placeholder_prefers_the_environment(s):
    assert c.render_value("${env:COINPULSE_S3_BUCKET}", s, Names(), {"COINPULSE_S3_BUCKET": "x"}) == "x"


def test_env_placeholder_falls_back_to_the_settings_field(s):
    assert c.render_value("${env:COINPULSE_S3_BUCKET}", s, Names(), {}) == s.s3_bucket


def test_the_writer_password_is_left_to_the_worker(s):
    env = {"COINPULSE_PG_WRITER_PASSWORD": "x"}
    assert c.render_value("${env:COINPULSE_PG_WRITER_PASSWORD}", s, Names(), env) == \
        "${env:COINPULSE_PG_WRITER_PASSWORD}"


def test_the_worker_resolves_exactly_what_the_renderer_leaves():
    props = (repo_root() / "connect" / "worker.properties").read_text()
    assert "config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider" in props
    pattern = re.search(r"^config\.providers\.env\.param\.allowlist\.pattern=(.+)$", props, re.M)
    assert pattern and all(re.fullmatch(pattern.group(1), name) for name in c.WORKER_RESOLVED)
    assert not re.fullmatch(pattern.group(1), "PATH")  # the worker's other variables stay out of reach


def test_unknown_env_variable_is_an_error(s):
    with pytest.raises(KeyError, match="NOPE"):
        c.render_value("${env:NOPE}", s, Names(), {})


def test_unknown_coinpulse_placeholder_is_an_error(s):
    with pytest.raises(KeyError, match="unknown placeholder"):
        c.render_value("${coinpulse:nope}", s, Names(), {})


def test_namespace_prefixes_topics_tables_dlq_and_name(s):
    files = c.load(repo_root() / "connect", "gold-candles")
    name, cfg = c.render(files[0], s, Names("t1"), {})
    assert name == "t1-coinpulse-gold-candles"
    assert cfg["topics"] == "t1.candle.1m,t1.candle.5m,t1.candle.1h"
    assert cfg["collection.name.format"] == "t1_gold.candles"
    assert cfg["errors.deadletterqueue.topic.name"] == "t1.dlq.connect"
    assert cfg["connection.password"] == "${env:COINPULSE_PG_WRITER_PASSWORD}"  # resolved by the worker
    assert cfg["connection.url"] == f"jdbc:postgresql://{s.host}:{s.postgres_port}/{s.pg_database}"


def test_production_names_have_no_prefix(s):
    name, cfg = c.render(c.load(repo_root() / "connect", "silver-trades")[0], s, Names(), {})
    assert name == "coinpulse-silver-trades" and cfg["topics"] == "upbit.trade"
    assert cfg["collection.name.format"] == "silver.trades"
    assert [k for k, v in cfg.items() if "${" in v] == ["connection.password"]


def test_load_rejects_a_missing_stem_and_a_malformed_file(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="connector file is"):
        c.load(tmp_path)
    with pytest.raises(ValueError, match="no connector file"):
        c.load(repo_root() / "connect", "silver-trades,nope")


def test_differs_ignores_the_name_connect_adds():
    wanted = {"a": "1", "topics": "x"}
    assert not c.differs(wanted, {"a": "1", "topics": "x", "name": "n"})
    assert c.differs(wanted, {"a": "2", "topics": "x", "name": "n"})
    assert c.differs(wanted, None)


def test_namespace_must_be_a_safe_identifier():
    with pytest.raises(ValueError):
        Names('x"; drop')
    assert Names("ab_1").silver == "ab_1_silver" and Names("ab_1").base_topic("ab_1.upbit.raw") == "upbit.raw"
