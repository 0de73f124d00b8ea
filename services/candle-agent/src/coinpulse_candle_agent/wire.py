"""The agent's Avro codecs are coinpulse_common.wire's (fastavro, plain HTTP to the registry, timestamps decoded as
epoch-ms ints); what is the agent's own is which schema each output is written with.

Each output is written with exactly its local schema, under the id the registry gives that schema for the
subject of the topic actually used (`<topic>-value`), never another schema's id: the schema is the one of the
declared topic the output's setting defaults to, so a renamed output (`COINPULSE_CANDLE_OUT_1M=...`) keeps its
schema. The id is looked up at the first record written (waiting up to `wait_s`, then `SchemaNotRegistered`).
"""

from __future__ import annotations

from typing import Any

from coinpulse_common.wire import FastDecoder as AvroValueDecoder
from coinpulse_common.wire import FastEncoder, topic_stem

from coinpulse_candle_agent.settings import CandleSettings

__all__ = ["AvroValueDecoder", "AvroValueEncoder", "output_stem"]

OUTPUTS = ("candle_out_1m", "candle_out_5m", "candle_out_1h", "candle_out_mention", "candle_late_topic",
           "candle_dlq_topic")


def output_stem(topic: str, s: Any) -> str:
    """The schema stem of the agent output written to `topic` (settings `s`), else of the declared topic `topic`."""
    for name in OUTPUTS:
        if getattr(s, name, None) == topic:
            return topic_stem(CandleSettings.model_fields[name].default)
    return topic_stem(topic)


class AvroValueEncoder(FastEncoder):
    """One output topic's encoder: `coinpulse_common.wire.FastEncoder`, the stem from `output_stem`, looked up lazily."""

    def __init__(self, topic: str, settings: Any, wait_s: float = 10.0, stem: str | None = None):
        super().__init__(settings, topic, stem or output_stem(topic, settings), wait_s, lazy=True)
