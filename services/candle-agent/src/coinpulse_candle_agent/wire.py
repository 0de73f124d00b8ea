"""Fast decoding of Confluent-wire-format Avro values for the hot path (trades).

Same contract as coinpulse_common.avro.TopicCodec.decode (magic byte 0, 4-byte schema id, Avro body; the writer
schema fetched from the registry by id, once), but reads with fastavro directly and keeps timestamp-millis as
epoch-millisecond ints instead of building datetimes the candle rules would convert back. About 5x cheaper per
record than the confluent-kafka deserializer, which matters at tens of thousands of trades per second.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
from coinpulse_common.avro import registry_client
from coinpulse_common.settings import Settings


def strip_logical_types(schema: Any) -> Any:
    """The schema with every `logicalType` removed (same binary encoding, plain values)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


class WireFormatError(ValueError):
    pass


class AvroValueDecoder:
    def __init__(self, settings: Settings):
        self._client = registry_client(settings.registry)
        self._schemas: dict[int, Any] = {}

    def _schema(self, schema_id: int) -> Any:
        parsed = self._schemas.get(schema_id)
        if parsed is None:
            text = self._client.get_schema(schema_id).schema_str
            parsed = fastavro.parse_schema(strip_logical_types(json.loads(text)))
            self._schemas[schema_id] = parsed
        return parsed

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < 6 or data[0] != 0:
            raise WireFormatError("not Confluent wire format (magic byte 0 + schema id + body)")
        schema = self._schema(int.from_bytes(data[1:5], "big"))
        buf = io.BytesIO(data)
        buf.seek(5)
        value = fastavro.schemaless_reader(buf, schema, None)
        if buf.tell() != len(data):
            raise WireFormatError(f"{len(data) - buf.tell()} trailing bytes after the Avro value")
        return value
