"""Fast Confluent-wire-format Avro encoding with fastavro against the schema registered for a topic.

The schema id is looked up once (subject `<topic>-value`, the exact text of `schemas/<stem>.avsc`; a subject
without that schema is waited for, then refused: records are never written under another schema's id); encoding is
then one fastavro call, several times cheaper than the generic serializer on the hot path.
"""

from __future__ import annotations

import io
import json
import struct
import time
from typing import Any

import fastavro
from coinpulse_common.avro import schema_text
from coinpulse_common.logging import get_logger
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

log = get_logger("coinpulse.ingest_upbit.avro")


class SchemaNotRegistered(RuntimeError):
    """The exact local schema is not registered under the topic's subject: the encoder refuses to write."""


class AvroEncoder:
    def __init__(self, registry: SchemaRegistryClient, topic: str, stem: str, wait_s: float = 30.0):
        text = schema_text(stem)
        self.topic = topic
        self.parsed = fastavro.parse_schema(json.loads(text))
        self.subject = f"{topic}-value"
        self.schema_id = self._registered_id(registry, text, wait_s)
        self._header = b"\x00" + struct.pack(">I", self.schema_id)
        self._write = fastavro.schemaless_writer

    def _registered_id(self, registry: SchemaRegistryClient, text: str, wait_s: float) -> int:
        """The id under which exactly this schema is registered for the subject, never another schema's id.

        Waits (with backoff) while the registry is unreachable or the schema is not registered yet, then raises."""
        deadline, delay, last = time.monotonic() + wait_s, 0.25, None
        want = json.loads(text)
        while True:
            try:
                return registry.lookup_schema(self.subject, Schema(text, "AVRO")).schema_id
            except Exception as e:  # noqa: BLE001 - registries differ in lookup support: compare the versions
                last = e
            try:  # a registry without lookup: find a version whose schema is ours
                for v in reversed(registry.get_versions(self.subject)):
                    reg = registry.get_version(self.subject, v)
                    if json.loads(reg.schema.schema_str) == want:
                        return reg.schema_id
            except Exception as e:  # noqa: BLE001
                last = e
            if time.monotonic() + delay > deadline:
                raise SchemaNotRegistered(
                    f"schema {self.topic!r} ({json.loads(text).get('name')}) is not registered under subject "
                    f"{self.subject!r} ({last}); refusing to write records under another schema's id: run "
                    "`uv run coinpulse up`, which registers schemas/*.avsc") from None
            log.warning("schema_not_registered", subject=self.subject, retry_in_s=delay, error=str(last)[:200])
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        self._write(buf, self.parsed, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        return fastavro.schemaless_reader(io.BytesIO(data[5:]), self.parsed, None)
