"""Confluent-wire-format Avro for the agent: values are magic byte 0, the 4-byte schema id, the Avro body.

Same contract as coinpulse_common.avro.TopicCodec (producers never auto-register; a topic is written with the
latest schema registered under `<topic>-value`; readers fetch the writer schema by id, once), but with fastavro
directly and a few plain HTTP GETs to the registry's Confluent-compatible API instead of confluent-kafka's
serializers and registry client:

- decoding keeps timestamp-millis as epoch-millisecond ints instead of building datetimes the candle rules would
  convert back, and is about 5x cheaper per record, which matters at tens of thousands of trades per second;
- the agent process does not import confluent-kafka's schema-registry stack (authlib, joserfc, cryptography...),
  about a second of its start-up.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import fastavro
from coinpulse_common.settings import Settings

TIMEOUT_S = 10.0
MAX_WAIT_S = 10.0  # longest pause between attempts while the registry is unreachable


def strip_logical_types(schema: Any) -> Any:
    """The schema with every `logicalType` removed (same binary encoding, plain values)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


class WireFormatError(ValueError):
    pass


def registry_get(registry: str, path: str) -> dict[str, Any]:
    """GET `<registry>/<path>` of the Confluent-compatible API as JSON."""
    url = f"{registry.rstrip('/')}/{path}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"registry URL {registry!r} is not http(s)")
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # the registry's own message, e.g. "Schema 7 not found."
        body = exc.read().decode("utf-8", "replace")
        try:
            message = json.loads(body).get("message") or body
        except ValueError:
            message = body
        raise RegistryError(f"registry GET {path}: HTTP {exc.code}: {message[:300]}", exc.code) from None


class RegistryError(LookupError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class SchemaNotRegistered(RegistryError):
    """The output topic's subject has no schema in the registry: the encoder refuses to write."""


class AvroValueDecoder:
    def __init__(self, settings: Settings):
        self._registry = settings.registry
        self._schemas: dict[int, Any] = {}

    def _schema(self, schema_id: int) -> Any:
        parsed = self._schemas.get(schema_id)
        if parsed is None:
            text = registry_get(self._registry, f"schemas/ids/{schema_id}")["schema"]
            parsed = fastavro.parse_schema(strip_logical_types(json.loads(text)))
            self._schemas[schema_id] = parsed
        return parsed

    async def ensure_schemas(self, values: Iterable[bytes | None],
                             on_wait: Callable[[int, Exception, float], None] | None = None) -> None:
        """Fetch the writer schemas that `values` name and that are not cached yet, waiting (with backoff) while the
        registry cannot be reached or answers 5xx: a good record must not become a dead letter because the registry
        is down or restarting. An id the registry answers 4xx for is left to `decode`, which raises for it."""
        heads = {v[1:5] for v in values if v is not None and len(v) >= 6 and v[0] == 0}
        for schema_id in (int.from_bytes(h, "big") for h in heads):
            delay = 0.5
            while schema_id not in self._schemas:
                try:
                    await asyncio.to_thread(self._schema, schema_id)
                except RegistryError as exc:
                    if exc.status is not None and exc.status < 500:
                        break
                    err: Exception = exc
                except OSError as exc:  # connection refused, reset, timed out (urllib's URLError is one)
                    err = exc
                else:
                    break
                if on_wait is not None:
                    on_wait(schema_id, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_S)

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


class AvroValueEncoder:
    """Writes values of one topic with the latest schema registered under `<topic>-value` (looked up once)."""

    def __init__(self, topic: str, settings: Settings, wait_s: float = 10.0):
        self.topic = topic
        self._registry = settings.registry
        self._header: bytes | None = None
        self._schema: Any = None
        self.wait_s = wait_s  # how long a missing subject or an unreachable registry is retried before raising

    def _load(self) -> None:
        """The schema and its id, both from the registry (the id always names the schema written with). Retries
        while the subject is missing or the registry unreachable, then raises naming the subject and the fix."""
        subject = f"{self.topic}-value"
        path = f"subjects/{urllib.parse.quote(subject, safe='')}/versions/latest"
        deadline, delay = time.monotonic() + self.wait_s, 0.25
        while True:
            try:
                latest = registry_get(self._registry, path)
                break
            except (RegistryError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise SchemaNotRegistered(
                        f"no schema registered under subject {subject!r} in {self._registry} ({exc}); nothing is "
                        f"written to {self.topic!r} without one: run `uv run coinpulse up`, which registers "
                        "schemas/*.avsc", getattr(exc, "status", None)) from None
                time.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_S)
        schema = fastavro.parse_schema(json.loads(latest["schema"]))
        self._header, self._schema = b"\0" + int(latest["id"]).to_bytes(4, "big"), schema

    def encode(self, value: dict[str, Any]) -> bytes:
        if self._header is None:
            self._load()
        buf = io.BytesIO()
        buf.write(self._header)  # type: ignore[arg-type]
        fastavro.schemaless_writer(buf, self._schema, value)
        return buf.getvalue()
