"""Which schema each agent output is written with: the one of the declared topic its setting defaults to, so a
renamed output keeps its schema (the codec itself is coinpulse_common.wire's, tested in libs/common/tests)."""

from __future__ import annotations

import pytest
from coinpulse_candle_agent.settings import CandleSettings
from coinpulse_candle_agent.wire import AvroValueEncoder, output_stem

pytestmark = pytest.mark.unit


def test_every_output_has_the_schema_of_its_declared_topic_even_renamed():
    s = CandleSettings(candle_out_1m="x.1m", candle_out_5m="x.5m", candle_out_1h="x.1h", candle_out_mention="x.m",
                       candle_late_topic="x.late", candle_dlq_topic="x.dlq")
    got = {t: output_stem(t, s) for t in ("x.1m", "x.5m", "x.1h", "x.m", "x.late", "x.dlq")}
    assert got == {"x.1m": "candle", "x.5m": "candle", "x.1h": "candle", "x.m": "mention", "x.late": "trade",
                   "x.dlq": "dead_letter"}
    assert {output_stem(t, CandleSettings()) for t in CandleSettings().candle_topics().values()} == {"candle"}


def test_an_output_the_agent_does_not_know_is_refused_before_any_record():
    with pytest.raises(KeyError, match="not declared"):
        AvroValueEncoder("x.unknown", CandleSettings())


def test_the_encoder_asks_the_registry_only_at_its_first_record():
    enc = AvroValueEncoder("x.dlq", CandleSettings(candle_dlq_topic="x.dlq", registry_url="http://127.0.0.1:1"))
    assert (enc.stem, enc.subject, enc.schema_id) == ("dead_letter", "x.dlq-value", -1)
