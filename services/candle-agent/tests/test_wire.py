"""The decoder's schema fetch against a small local HTTP server standing in for the registry's GET /schemas/ids/N:
a registry that is down or restarting makes records wait, never dead letters; an unknown id is an error."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro
import pytest
from coinpulse_candle_agent.wire import AvroValueDecoder, RegistryError
from coinpulse_common.settings import Settings

pytestmark = pytest.mark.unit

SCHEMA = {"type": "record", "name": "T", "fields": [{"name": "n", "type": "long"}]}


class Registry(ThreadingHTTPServer):
    """Answers 503 for the first `failures` requests, then the schema for id 7 and 404 for any other id."""

    def __init__(self, failures: int):
        super().__init__(("127.0.0.1", 0), Handler)
        self.failures = failures
        self.requests: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: Registry

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if len(self.server.requests) <= self.server.failures:
            status, body = 503, {"message": "starting"}
        elif self.path == "/schemas/ids/7":
            status, body = 200, {"schema": json.dumps(SCHEMA)}
        else:
            status, body = 404, {"error_code": 40403, "message": "Schema not found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def value(schema_id: int, n: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(SCHEMA), {"n": n})
    return b"\0" + schema_id.to_bytes(4, "big") + buf.getvalue()


@pytest.fixture
def registry():
    servers: list[Registry] = []

    def start(failures: int = 0) -> Registry:
        srv = Registry(failures)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def decoder(url: str) -> AvroValueDecoder:
    return AvroValueDecoder(Settings(registry_url=url))


def test_records_wait_while_the_registry_answers_5xx(registry):
    srv = registry(failures=2)
    dec = decoder(f"http://127.0.0.1:{srv.server_address[1]}")
    waits: list[tuple[int, float]] = []
    asyncio.run(dec.ensure_schemas([value(7, 1), value(7, 2), None, b"junk"], lambda i, e, d: waits.append((i, d))))
    assert waits == [(7, 0.5), (7, 1.0)]  # one wait per failed attempt, backing off
    assert srv.requests == ["/schemas/ids/7"] * 3
    assert dec.decode(value(7, 42)) == {"n": 42}
    assert len(srv.requests) == 3  # cached: no request per record


def test_records_wait_while_the_registry_is_unreachable(registry):
    srv = registry()
    port = srv.server_address[1]
    srv.shutdown()
    srv.server_close()  # nothing listens on the port now
    dec = decoder(f"http://127.0.0.1:{port}")
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
    dec = decoder(f"http://127.0.0.1:{srv.server_address[1]}")
    waits: list[int] = []
    asyncio.run(dec.ensure_schemas([value(9, 1)], lambda i, e, d: waits.append(i)))
    assert waits == []
    with pytest.raises(RegistryError, match="HTTP 404") as exc:
        dec.decode(value(9, 1))
    assert exc.value.status == 404
