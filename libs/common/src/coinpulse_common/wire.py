"""The fast Confluent-wire-format Avro codec: magic byte 0, the 4-byte schema id, the Avro body, with fastavro.

The rules:

- **An encoder writes exactly the local schema.** `FastEncoder` writes a topic's values with `schemas/<stem>.avsc`
  under the id the registry gives *that* schema for `<topic>-value`, never under another schema's id (not the
  latest one either): a subject without it is waited for (with backoff, `wait_s`), then refused with
  `SchemaNotRegistered`, naming the subject and the fix. Producers never register: `coinpulse up` does.
- **A decoder reads with the writer's schema**, fetched by id once and cached, with logical types stripped, so
  timestamps stay epoch-millisecond ints (the rules work in them). `FastDecoder.ensure_schemas` waits while the
  registry is down or restarting, so a good record never becomes a dead letter for that.
- **One value, nothing more:** a value that is not wire format, or has bytes after its Avro body, is a
  `WireFormatError`.

Registry look-ups are a few plain HTTP requests to the Confluent-compatible API (Apicurio's ccompat here) rather
than confluent-kafka's serializers and registry client (`coinpulse_common.avro.TopicCodec`, the generic path):
the hot path is one fastavro call, several times cheaper per record, and a process that only uses this module does
not import the registry client's stack (authlib, cryptography...: about a second of start-up). A caller that
already holds a confluent `SchemaRegistryClient` (ingest, and its in-memory `mock://` registry in unit tests) may
pass it instead of a URL: the look-up then goes through the client, the codec is the same.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import fastavro

from coinpulse_common.logging import get_logger
from coinpulse_common.paths import schemas_dir
from coinpulse_common.topics import BY_NAME

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from coinpulse_common.settings import Settings

    Registry = str | Settings | SchemaRegistryClient  # a URL, anything with `.registry` (a URL), or a client

log = get_logger("coinpulse.common.wire")
T = TypeVar("T")

TIMEOUT_S = 10.0  # per HTTP request
MAX_WAIT_S = 5.0  # longest pause between attempts while the registry is unreachable or the schema missing
FIX = "run `uv run coinpulse up`, which registers schemas/*.avsc"


class WireFormatError(ValueError):
    pass


class RegistryError(LookupError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class SchemaNotRegistered(RegistryError):
    """The exact local schema is not registered under the topic's subject: the encoder refuses to write."""


def strip_logical_types(schema: Any) -> Any:
    """The schema with every `logicalType` removed (same binary encoding, plain values)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


def registry_request(registry: str, path: str, body: Any = None) -> Any:
    """GET `<registry>/<path>` of the Confluent-compatible API as JSON (POST `body` as JSON when given).

    An HTTP error is a `RegistryError` with the registry's own message and the status."""
    url = f"{registry.rstrip('/')}/{path}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"registry URL {registry!r} is not http(s)")
    ctype = "application/vnd.schemaregistry.v1+json"
    headers = {"Accept": f"{ctype}, application/json"}
    if body is not None:
        headers["Content-Type"] = ctype
    req = urllib.request.Request(url, None if body is None else json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # the registry's own message, e.g. "Schema 7 not found."
        text = exc.read().decode("utf-8", "replace")
        try:
            message = json.loads(text).get("message") or text
        except (ValueError, AttributeError):
            message = text
        raise RegistryError(f"registry {req.get_method()} {path}: HTTP {exc.code}: {message[:300]}", exc.code) from None


class _Http:
    """Look-ups over plain HTTP (the Confluent-compatible API)."""

    def __init__(self, url: str):
        self.url = url

    def exact(self, subject: str, text: str) -> int:
        """`POST subjects/<subject>` answers the id when exactly this schema is registered under the subject."""
        return int(registry_request(self.url, f"subjects/{urllib.parse.quote(subject, safe='')}", {"schema": text})["id"])

    def versions(self, subject: str) -> Iterator[tuple[str, int]]:
        path = f"subjects/{urllib.parse.quote(subject, safe='')}/versions"
        for v in reversed(registry_request(self.url, path)):
            reg = registry_request(self.url, f"{path}/{v}")
            yield reg["schema"], int(reg["id"])


class _Client:
    """Look-ups through a confluent `SchemaRegistryClient` the caller already holds."""

    def __init__(self, client: SchemaRegistryClient):
        self.client = client

    def exact(self, subject: str, text: str) -> int:
        from confluent_kafka.schema_registry import Schema  # a caller with a client has imported it already

        return int(_known(self.client.lookup_schema(subject, Schema(text, "AVRO")).schema_id))

    def versions(self, subject: str) -> Iterator[tuple[str, int]]:
        for v in reversed(self.client.get_versions(subject)):
            reg = self.client.get_version(subject, v)
            yield _known(reg.schema.schema_str), int(_known(reg.schema_id))


def _known(value: T | None) -> T:
    """A field the registry always answers (the client's types allow None)."""
    if value is None:
        raise RegistryError("the registry answered without a schema id or text")
    return value


def registered_id(registry: Registry, subject: str, text: str) -> int:
    """The id under which exactly the schema `text` is registered for `subject` (one attempt; raises otherwise).

    The registry's exact look-up decides; when it fails (registries differ in that endpoint's support and in how
    they compare texts) the subject's versions are compared as parsed JSON. Never another schema's id."""
    # a client answers `lookup_schema` (its class is not imported here: the agent never loads confluent's registry)
    source: _Client | _Http = (_Client(cast("SchemaRegistryClient", registry)) if hasattr(registry, "lookup_schema")
                               else _Http(registry_url(registry)))
    try:
        return source.exact(subject, text)
    except Exception as exc:  # noqa: BLE001 - the versions decide; this error is the answer if they do not
        first = exc
    want = json.loads(text)
    try:
        for schema, schema_id in source.versions(subject):
            if json.loads(schema) == want:
                return schema_id
    except Exception:  # noqa: BLE001 - the subject's versions cannot be listed: the look-up's error says why
        pass
    raise first


def registry_url(registry: str | Any) -> str:
    return registry if isinstance(registry, str) else registry.registry


def topic_stem(topic: str) -> str:
    """The schema stem of a declared topic (`coinpulse_common.topics`)."""
    spec = BY_NAME.get(topic)
    if spec is None:
        raise KeyError(f"topic {topic!r} is not declared in coinpulse_common.topics: pass its schema stem")
    return spec.schema


class FastEncoder:
    """Writes the values of one topic with exactly `schemas/<stem>.avsc` (default: the topic's declared schema),
    under the id the registry gives that schema for `<topic>-value`.

    The id is looked up at construction (with `lazy`, at the first `encode`), waiting up to `wait_s` while the
    registry is unreachable or the schema not registered, then raising `SchemaNotRegistered`."""

    def __init__(self, registry: Registry, topic: str, stem: str | None = None, wait_s: float = 30.0, *,
                 lazy: bool = False):
        self.topic, self.subject, self.wait_s = topic, f"{topic}-value", wait_s
        self.stem = stem or topic_stem(topic)
        self._registry = registry
        self._text = (schemas_dir() / f"{self.stem}.avsc").read_text()
        self._declared: dict[str, Any] = json.loads(self._text)
        self.parsed = fastavro.parse_schema(self._declared)
        self.schema_id = -1
        self._header = b""
        if not lazy:
            self.resolve()

    def resolve(self) -> int:
        """Look the schema id up (waiting with backoff up to `wait_s`), once; the header is then precomputed."""
        deadline, delay = time.monotonic() + self.wait_s, 0.25
        while not self._header:
            try:
                self._lookup()
            except Exception as exc:  # noqa: BLE001 - down, missing, another schema: all wait, then refuse
                if time.monotonic() + delay > deadline:
                    raise SchemaNotRegistered(
                        f"schema {self.stem!r} ({self._declared.get('name')}) is not registered under subject "
                        f"{self.subject!r} ({exc}); refusing to write records under another schema's id: {FIX}",
                        getattr(exc, "status", None)) from None
                log.warning("schema_not_registered", subject=self.subject, retry_in_s=delay, error=str(exc)[:200])
                time.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_S)
        return self.schema_id

    def _lookup(self) -> None:
        """One lookup of the schema id; the header is then precomputed."""
        self.schema_id = registered_id(self._registry, self.subject, self._text)
        self._header = b"\0" + self.schema_id.to_bytes(4, "big")

    async def ensure_resolved(self, on_wait: Callable[[str, Exception, float], None] | None = None) -> None:
        """Look the schema id up without blocking the event loop, waiting (with backoff) for as long as the registry
        cannot give it: for a writer that must know the id before it applies any input (the candle agent). A no-op
        once the id is known; `on_wait(subject, error, delay_s)` hears of each wait."""
        delay = 0.5
        while not self._header:
            try:
                await asyncio.to_thread(self._lookup)
            except Exception as exc:  # noqa: BLE001 - down, missing, another schema: all wait
                if on_wait is not None:
                    on_wait(self.subject, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_S)

    def encode(self, value: dict[str, Any]) -> bytes:
        if not self._header:
            self.resolve()
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self.parsed, value)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """A value this encoder wrote (its header, its schema; logical types as fastavro reads them)."""
        if not self._header:
            self.resolve()
        if data[:5] != self._header:
            raise WireFormatError(f"not a value written with schema id {self.schema_id} ({self.subject})")
        return _read(data, self.parsed)


def _read(data: bytes, schema: Any) -> dict[str, Any]:
    buf = io.BytesIO(data)
    buf.seek(5)
    value = fastavro.schemaless_reader(buf, schema, None)
    if buf.tell() != len(data):
        raise WireFormatError(f"{len(data) - buf.tell()} trailing bytes after the Avro value")
    if not isinstance(value, dict):
        raise WireFormatError(f"the value is a {type(value).__name__}, not a record")
    return value


class FastDecoder:
    """Reads values of any topic with their writer schema (by id, fetched once), timestamps as epoch-ms ints."""

    def __init__(self, registry: str | Any):
        self._registry = registry_url(registry)
        self._schemas: dict[int, Any] = {}

    def _schema(self, schema_id: int) -> Any:
        parsed = self._schemas.get(schema_id)
        if parsed is None:
            text = registry_request(self._registry, f"schemas/ids/{schema_id}")["schema"]
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
        return _read(data, self._schema(int.from_bytes(data[1:5], "big")))
