"""The candle agent's sandbox for integration tests and benchmarks: private topic sets (the agent's inputs and
outputs under unique names, created with the declared partitions and registered under `<topic>-value` with the
canonical schema), the environment that points an agent process at them, the agent as a subprocess, and a reader of
its output topics."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from coinpulse_common import topics
from coinpulse_common.avro import TopicCodec, registry_client, schema_text
from coinpulse_common.kafka import admin, consumer
from coinpulse_common.settings import Settings
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema

from coinpulse_testing.procs import spawn_python
from coinpulse_testing.reference import candle_diff


@dataclass
class TopicSet:
    prefix: str
    partitions: int = 3

    def names(self) -> dict[str, tuple[str, str, int, bool]]:
        """role -> (topic, canonical topic, partitions, compacted)."""
        p, n = self.prefix, self.partitions
        return {
            "trade": (f"{p}.trade", topics.UPBIT_TRADE, n, False),
            "post": (f"{p}.post", topics.DC_POST, n, False),
            "comment": (f"{p}.comment", topics.DC_COMMENT, n, False),
            "1m": (f"{p}.candle.1m", topics.CANDLE_1M, n, True),
            "5m": (f"{p}.candle.5m", topics.CANDLE_5M, n, True),
            "1h": (f"{p}.candle.1h", topics.CANDLE_1H, n, True),
            "mention": (f"{p}.mention.1m", topics.MENTION_1M, n, True),
            "late": (f"{p}.candle.late", topics.CANDLE_LATE, 1, False),
            "dlq": (f"{p}.dlq", topics.dlq("candle-agent"), 1, False),
        }

    def topic(self, role: str) -> str:
        return self.names()[role][0]

    def create(self, s: Settings) -> None:
        a = admin(s)
        new = [NewTopic(t, num_partitions=n, replication_factor=1,
                        config={"cleanup.policy": "compact"} if compacted else {})
               for t, _, n, compacted in self.names().values()]
        for fut in a.create_topics(new, request_timeout=15).values():
            try:
                fut.result()
            except Exception as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
        client = registry_client(s.registry)
        for t, canonical, _, _ in self.names().values():
            client.register_schema(f"{t}-value", Schema(schema_text(topics.BY_NAME[canonical].schema), "AVRO"))

    def agent_env(self, app_id: str, port: int, **extra: Any) -> dict[str, str]:
        env = {
            "COINPULSE_CANDLE_APP_ID": app_id,
            "COINPULSE_CANDLE_METRICS_PORT": str(port),
            "COINPULSE_CANDLE_TRADE_TOPIC": self.topic("trade"),
            "COINPULSE_CANDLE_POST_TOPIC": self.topic("post"),
            "COINPULSE_CANDLE_COMMENT_TOPIC": self.topic("comment"),
            "COINPULSE_CANDLE_OUT_1M": self.topic("1m"),
            "COINPULSE_CANDLE_OUT_5M": self.topic("5m"),
            "COINPULSE_CANDLE_OUT_1H": self.topic("1h"),
            "COINPULSE_CANDLE_OUT_MENTION": self.topic("mention"),
            "COINPULSE_CANDLE_LATE_TOPIC": self.topic("late"),
            "COINPULSE_CANDLE_DLQ_TOPIC": self.topic("dlq"),
        }
        env.update({f"COINPULSE_CANDLE_{k.upper()}": str(v) for k, v in extra.items()})
        return env


def start_agent(env: dict[str, str], log_path: str, cpu: int | None = None) -> subprocess.Popen[bytes]:
    """`python -m coinpulse_candle_agent` in its own session with the given environment on top of ours."""
    return spawn_python(["-m", "coinpulse_candle_agent"], Path(log_path), {**os.environ, **env}, cpu=cpu)


class TopicReader:
    """Reads a topic from the beginning (no group commits); keeps the last value per key and every value."""

    def __init__(self, s: Settings, topic: str, canonical: str, partitions: int) -> None:
        self.codec = TopicCodec(topic, s, schema_topic=canonical)
        self.c = consumer(f"reader-{topic}-{time.time_ns()}", s)
        self.c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.last: dict[bytes | None, dict[str, Any] | None] = {}  # None: a record without a key / a tombstone
        self.all: list[dict[str, Any] | None] = []

    def close(self) -> None:
        self.c.close()

    def poll(self, seconds: float = 0.5) -> None:
        for m in self.c.consume(10_000, seconds):
            if m.error() is None:
                data = m.value()
                v = None if data is None else self.codec.decode(data)
                self.last[m.key()] = v
                self.all.append(v)


def wait_for_candles(reader: TopicReader, want: dict[bytes, dict[str, Any]], timeout: float,
                     alive: Any = None) -> None:
    """Poll `reader` until its last value per key equals `want` (gold key -> reference candle), or fail after
    `timeout` s naming the missing and differing candles; `alive()` False (the agent process died) fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        reader.poll()
        diffs = {k: candle_diff(normalise(v), w) for k, w in want.items() if (v := reader.last.get(k)) is not None}
        missing = [k for k in want if reader.last.get(k) is None]
        if not missing and not any(diffs.values()):
            return
        if alive is not None:
            assert alive(), "agent process died"
        if time.monotonic() > deadline:
            bad = {k: d for k, d in diffs.items() if d}
            raise AssertionError(f"{len(missing)} of {len(want)} candles missing ({missing[:5]}), {len(bad)} differ: "
                                 f"{list(bad.items())[:3]}")


def as_ms(v: int | datetime) -> int:
    return v if isinstance(v, int) else int(round(v.timestamp() * 1000))


def normalise(rec: dict[str, Any]) -> dict[str, Any]:
    out = dict(rec)
    for f in ("bucket_start", "first_trade_at", "last_trade_at", "emitted_at"):
        if f in out:
            out[f] = as_ms(out[f])
    return out
