"""The agent's encoder against the real registry: an output whose subject has no schema is refused with the
subject's name and the fix, after waiting; it never encodes without the id of exactly its schema."""

from __future__ import annotations

import pytest
from coinpulse_candle_agent.settings import CandleSettings
from coinpulse_candle_agent.wire import AvroValueEncoder
from coinpulse_common.wire import SchemaNotRegistered

pytestmark = pytest.mark.integration


def test_an_unregistered_subject_is_refused_naming_it_and_the_fix(stack, unique):
    topic = f"it-wire-{unique}.candle.1m"
    enc = AvroValueEncoder(topic, CandleSettings(registry_url=stack.registry, candle_out_1m=topic), wait_s=1.0)
    with pytest.raises(SchemaNotRegistered) as e:
        enc.encode({"market": "KRW-BTC"})
    assert f"{topic}-value" in str(e.value) and "uv run coinpulse up" in str(e.value)
