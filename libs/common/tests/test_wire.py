"""The fast wire codec against a small local HTTP server standing in for the registry's Confluent-compatible API:
values round-trip with the header of exactly the local schema's id; the decoder keeps timestamps as epoch-ms ints
and refuses what is not one wire-format value; the encoder never takes another schema's id (refused after
`wait_s`, naming the subject and the fix), falls back to comparing versions when the exact look-up misbehaves, and
waits while the registry is down; the decoder's schema fetch waits while the registry is down, never dead letters."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro
import pytest
from coinpulse_common.avro import schema_text
from coinpulse_common.settings import Settings
from coinpulse_common.wire import (
    FastDecoder,
    FastEncoder,
    RegistryError,
    SchemaNotRegistered,
    WireFormatError,
)
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

pytestmark = pytest.mark.unit

SCHEMA = {"type": "record", "name": "T", "fields": [{"name": "n", "type": "long"}]}
BASE = 1_767_225_600_000  # 2026-01-01T00:00Z
CANDLE = {"market": "KRW-BTC", "interval": "1m", "bucket_start": BASE, "open": 1.0, "high": 2.0, "low": 0.5,
          "close": 1.5, "volume": 3.0, "quote_volume": 4.5, "vwap": 1.5, "trade_count": 3, "buy_volume": 1.0,
          "sell_volume": 2.0, "first_trade_at": BASE + 1, "last_trade_at": BASE + 59_000, "revision": 2,
          "emitted_at": BASE + 70_000}


class Registry(ThreadingHTTPServer):
    """Answers 503 for the first `failures` requests. Then: GET /schemas/ids/N, POST /subjects/S (the id of exactly
    that text, or 404; always 500 when `lookup_broken`), GET /subjects/S/versions[/V], from `subjects`."""

    def __init__(self, failures: int = 0, lookup_broken: bool = False):
        super().__init__(("127.0.0.1", 0), Handler)
        self.failures, self.lookup_broken = failures, lookup_broken
        self.requests: list[str] = []
        self.subjects: dict[str, list[tuple[str, int]]] = {}  # subject -> [(schema text, id)] by version
        self.ids: dict[int, str] = {7: json.dumps(SCHEMA)}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def register(self, subject: str, text: str, schema_id: int) -> None:
        self.subjects.setdefault(subject, []).append((text, schema_id))
        self.ids[schema_id] = text

    def answer(self, method: str, path: str, body: dict | None) -> tuple[int, object]:
        self.requests.append(f"{method} {path}")
        if len(self.requests) <= self.failures:
            return 503, {"message": "starting"}
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts[:2] == ["schemas", "ids"] and int(parts[2]) in self.ids:
            return 200, {"schema": self.ids[int(parts[2])]}
        if parts[0] != "subjects" or parts[1] not in self.subjects:
            return 404, {"error_code": 40401, "message": "not found"}
        versions = self.subjects[parts[1]]
        if method == "POST":
            if self.lookup_broken:
                return 500, {"message": "lookup broken"}
            ids = [i for text, i in versions if body is not None and text == body["schema"]]
            return (200, {"id": ids[0]}) if ids else (404, {"error_code": 40403, "message": "no such schema"})
        if len(parts) == 3:
            return 200, list(range(1, len(versions) + 1))
        text, schema_id = versions[int(parts[3]) - 1]
        return 200, {"id": schema_id, "version": int(parts[3]), "schema": text}


class Handler(BaseHTTPRequestHandler):
    server: Registry

    def _reply(self, method: str) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        status, answer = self.server.answer(method, self.path, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply("GET")

    def do_POST(self) -> None:
        self._reply("POST")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry():
    servers: list[Registry] = []

    def start(**kw: object) -> Registry:
        srv = Registry(**kw)  # type: ignore[arg-type]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def closed_port_url(registry) -> str:
    srv = registry()
    srv.shutdown()
    srv.server_close()  # nothing listens on the port now
    return srv.url


def value(schema_id: int, n: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(SCHEMA), {"n": n})
    return b"\0" + schema_id.to_bytes(4, "big") + buf.getvalue()


# -- the codec -------------------------------------------------------------------------------------------------
def test_a_value_round_trips_with_the_header_of_its_schema_id_and_timestamps_as_ints(registry):
    srv = registry()
    srv.register("candle.1m-value", schema_text("candle"), 12)
    enc = FastEncoder(srv.url, "candle.1m")  # the declared topic's schema: candle
    data = enc.encode(CANDLE)
    assert data[:5] == b"\0\0\0\0\x0c" and enc.schema_id == 12
    got = FastDecoder(Settings(registry_url=srv.url)).decode(data)
    assert got == CANDLE and type(got["bucket_start"]) is int  # epoch ms, not a datetime
    own = enc.decode(data)  # the encoder reads its own values with logical types, as fastavro does
    assert isinstance(own["bucket_start"], datetime) and int(own["bucket_start"].timestamp() * 1000) == BASE


def test_what_is_not_one_wire_format_value_is_refused(registry):
    srv = registry()
    dec = FastDecoder(srv.url)
    assert dec.decode(value(7, 5)) == {"n": 5}
    with pytest.raises(WireFormatError, match="2 trailing bytes"):
        dec.decode(value(7, 5) + b"\0\0")
    with pytest.raises(WireFormatError, match="magic byte"):
        dec.decode(b"\x01" + value(7, 5)[1:])
    with pytest.raises(WireFormatError, match="magic byte"):
        dec.decode(b"\0\0\0")


def test_the_encoder_reads_back_only_values_written_with_its_schema_id(registry):
    srv = registry()
    srv.register("t-value", schema_text("candle"), 3)
    enc = FastEncoder(srv.url, "t", "candle")
    data = enc.encode(CANDLE)
    with pytest.raises(WireFormatError, match="schema id 3"):
        enc.decode(b"\0\0\0\0\x04" + data[5:])
    with pytest.raises(WireFormatError, match="trailing"):
        enc.decode(data + b"\0")


# -- the encoder's schema id ------------------------------------------------------------------------------------
def test_the_id_of_exactly_the_local_schema_is_used_not_the_latest(registry):
    srv = registry()
    srv.register("t-value", schema_text("candle"), 4)
    srv.register("t-value", schema_text("dead_letter"), 5)  # the latest version is another schema
    assert FastEncoder(srv.url, "t", "candle").schema_id == 4


def test_when_the_exact_lookup_misbehaves_the_versions_are_compared_as_parsed_json(registry):
    srv = registry(lookup_broken=True)
    srv.register("t-value", schema_text("dead_letter"), 5)
    srv.register("t-value", json.dumps(json.loads(schema_text("candle"))), 6)  # same schema, other text
    assert FastEncoder(srv.url, "t", "candle").schema_id == 6
    assert "GET /subjects/t-value/versions" in srv.requests


def test_another_schema_under_the_subject_is_refused_after_waiting_naming_the_subject_and_the_fix(registry):
    srv = registry()
    srv.register("t-value", schema_text("dead_letter"), 5)
    with pytest.raises(SchemaNotRegistered) as e:
        FastEncoder(srv.url, "t", "candle", wait_s=1.0)
    assert "'t-value'" in str(e.value) and "uv run coinpulse up" in str(e.value) and "no such schema" in str(e.value)
    assert srv.requests.count("POST /subjects/t-value") >= 2  # retried with backoff before refusing


def test_a_lazy_encoder_asks_the_registry_at_its_first_value_and_refuses_then(registry):
    srv = registry()
    enc = FastEncoder(srv.url, "t", "candle", wait_s=0.2, lazy=True)
    assert srv.requests == []
    with pytest.raises(SchemaNotRegistered, match="'t-value'"):
        enc.encode(CANDLE)


def test_the_encoder_waits_while_the_registry_is_down_and_proceeds_when_it_answers(registry):
    srv = registry(failures=4)  # two attempts (the look-up and its fallback each) answered 503
    srv.register("t-value", schema_text("candle"), 9)
    assert FastEncoder(srv.url, "t", "candle", wait_s=30.0).schema_id == 9
    assert srv.requests.count("POST /subjects/t-value") == 3


def test_an_unreachable_registry_is_waited_for_then_refused(registry):
    with pytest.raises(SchemaNotRegistered, match="Connection refused|URLError|refused"):
        FastEncoder(closed_port_url(registry), "t", "candle", wait_s=0.5)


def test_an_undeclared_topic_needs_its_stem():
    with pytest.raises(KeyError, match="not declared"):
        FastEncoder("http://127.0.0.1:1", "it-undeclared.topic", lazy=True)


def test_a_confluent_client_is_asked_the_same_question():
    reg = SchemaRegistryClient.new_client({"url": "mock://wire-unit"})
    other = reg.register_schema("c1-value", Schema(schema_text("dead_letter"), "AVRO"))
    with pytest.raises(SchemaNotRegistered, match="'c1-value'"):
        FastEncoder(reg, "c1", "candle", wait_s=0.3)
    ours = reg.register_schema("c2-value", Schema(schema_text("candle"), "AVRO"))
    enc = FastEncoder(reg, "c2", "candle", wait_s=0.3)
    assert enc.schema_id == ours != other and enc.encode(CANDLE)[:5] == b"\0" + ours.to_bytes(4, "big")


# -- the decoder's schema fetch ---------------------------------------------------------------------------------
def test_records_wait_while_the_registry_answers_5xx(registry):
    srv = registry(failures=2)
    dec = FastDecoder(srv.url)
    waits: list[tuple[int, float]] = []
    asyncio.run(dec.ensure_schemas([value(7, 1), value(7, 2), None, b"junk"], lambda i, e, d: waits.append((i, d))))
    assert waits == [(7, 0.5), (7, 1.0)]  # one wait per failed attempt, backing off
    assert srv.requests == ["GET /schemas/ids/7"] * 3
    assert dec.decode(value(7, 42)) == {"n": 42}
    assert len(srv.requests) == 3  # cached: no request per record


def test_records_wait_while_the_registry_is_unreachable(registry):
    dec = FastDecoder(closed_port_url(registry))
    errors: list[Exception] = []

    async def run() -> None:
        waited = asyncio.Event()

        def on_wait(i: int, e: Exception, d: float) -> None:
            errors.append(e)
            waited.set()

        task = asyncio.create_task(dec.ensure_schemas([value(7, 1)], on_wait))
        await asyncio.wait_for(waited.wait(), 30)
        assert not task.done()  # still waiting, nothing decided about the record
        task.cancel()

    asyncio.run(run())
    assert isinstance(errors[0], OSError)


def test_an_unknown_schema_id_is_left_to_decode_which_raises(registry):
    srv = registry()
    dec = FastDecoder(srv.url)
    waits: list[int] = []
    asyncio.run(dec.ensure_schemas([value(9, 1)], lambda i, e, d: waits.append(i)))
    assert waits == []
    with pytest.raises(RegistryError, match="HTTP 404") as exc:
        dec.decode(value(9, 1))
    assert exc.value.status == 404
