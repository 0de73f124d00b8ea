"""The dashboard's service probes against real HTTP servers on loopback.

- `health.services` / `health.probe` against a local server answering 200, 404, 503, never, and a closed port: the
  box state and the message a person reads;
- the default probes follow each service's port setting (the same `COINPULSE_*_METRICS_PORT` variables);
- every endpoint the dashboard probes is served by that service's own HTTP app, started in-process (no Kafka):
  a probe must never meet a 404.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from coinpulse_dashboard import health
from coinpulse_dashboard.settings import DashboardSettings
from coinpulse_testing.net import free_port
from coinpulse_testing.wait import wait_for

pytestmark = pytest.mark.unit

PORT_VARS = {"ingest-upbit": "COINPULSE_INGEST_METRICS_PORT", "crawl-dc": "COINPULSE_CRAWL_METRICS_PORT",
             "candle-agent": "COINPULSE_CANDLE_METRICS_PORT", "sink": "COINPULSE_SINK_METRICS_PORT"}


@asynccontextmanager
async def _server() -> AsyncIterator[int]:
    """A real aiohttp server on a free loopback port: /ok 200 JSON, /sick 503 JSON with a reason, /text 500 text,
    /hang never answers; anything else 404 (aiohttp's own)."""
    never = asyncio.Event()

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "lag": 3})

    async def sick(_: web.Request) -> web.Response:
        return web.json_response({"ok": False, "reason": "no partition of upbit.trade assigned"}, status=503)

    async def text(_: web.Request) -> web.Response:
        return web.Response(text="boom\n  in the handler", status=500)

    async def hang(_: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    app = web.Application()
    app.add_routes([web.get("/ok", ok), web.get("/sick", sick), web.get("/text", text), web.get("/hang", hang)])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server.port
    finally:
        never.set()
        await server.close()


async def test_a_probe_answering_404_is_an_error_that_says_the_url_is_wrong():
    async with _server() as port, aiohttp.ClientSession() as http:
        box = await health.services(http, "127.0.0.1", [("candle-agent", port, "/health")], timeout_s=5)
    item = box["services"][0]
    assert item["state"] == "down" and item["status"] == 404
    assert item["error"] == ("candle-agent: /health answered 404: the probe's URL is wrong or the service is too "
                             "old")
    assert box["state"] == "degraded" and box["error"] == item["error"]


async def test_a_probe_answering_200_is_up_with_the_service_detail():
    async with _server() as port, aiohttp.ClientSession() as http:
        box = await health.services(http, "127.0.0.1", [("sink", port, "/ok")], timeout_s=5)
    assert box == {"state": "up", "services": [{"name": "sink", "status": 200, "state": "up",
                                                "detail": {"ok": True, "lag": 3}}]}


async def test_a_probe_answering_503_is_degraded_with_the_service_reason():
    async with _server() as port, aiohttp.ClientSession() as http:
        box = await health.services(http, "127.0.0.1", [("candle-agent", port, "/sick"), ("sink", port, "/ok")],
                                    timeout_s=5)
    sick, ok = box["services"]
    assert sick["state"] == "degraded" and sick["status"] == 503
    assert sick["error"] == "candle-agent: /sick answered 503: no partition of upbit.trade assigned"
    assert ok["state"] == "up"
    assert box["state"] == "degraded" and box["error"] == sick["error"]


async def test_a_probe_answering_500_text_is_down_with_the_text():
    async with _server() as port, aiohttp.ClientSession() as http:
        item = await health.probe(http, "127.0.0.1", "ingest-upbit", port, "/text", timeout_s=5)
    assert item["state"] == "down" and item["error"] == "ingest-upbit: /text answered 500: boom in the handler"


async def test_a_closed_port_is_down_not_running():
    port = free_port()
    async with aiohttp.ClientSession() as http:
        item = await health.probe(http, "127.0.0.1", "crawl-dc", port, "/health", timeout_s=5)
    assert item["state"] == "down"
    assert item["error"] == f"crawl-dc: nothing listens on 127.0.0.1:{port}: the service is not running (or still " \
                            "starting)"


async def test_a_probe_that_gets_no_answer_is_down_after_its_timeout():
    async with _server() as port, aiohttp.ClientSession() as http:
        item = await health.probe(http, "127.0.0.1", "sink", port, "/hang", timeout_s=0.3)
    assert item["state"] == "down" and item["error"] == f"sink: /hang on port {port} gave no answer within 0.3 s"


async def test_one_hanging_probe_does_not_hide_the_others_in_the_snapshot_section():
    async with _server() as port, aiohttp.ClientSession() as http:
        box = await health._guard("services", 0.3 + 1, lambda: health.services(
            http, "127.0.0.1", [("sink", port, "/hang"), ("ingest-upbit", port, "/ok")], 0.3))
    assert [i["state"] for i in box["services"]] == ["down", "up"]


def test_default_probes_ask_health_on_each_services_own_port_setting(monkeypatch):
    from coinpulse_candle_agent.settings import CandleSettings
    from coinpulse_crawl_dc.config import CrawlSettings
    from coinpulse_ingest_upbit.settings import IngestSettings
    from coinpulse_sink.settings import SinkSettings

    own = {"ingest-upbit": (IngestSettings, "ingest_metrics_port"), "crawl-dc": (CrawlSettings, "crawl_metrics_port"),
           "candle-agent": (CandleSettings, "candle_metrics_port"), "sink": (SinkSettings, "sink_metrics_port")}
    for var in PORT_VARS.values():
        monkeypatch.delenv(var, raising=False)
    defaults = health.parse_probes(DashboardSettings(_env_file=None).dashboard_service_probes)
    assert defaults == [(n, own[n][0].model_fields[own[n][1]].default, "/health") for n in PORT_VARS]
    moved = {n: free_port() for n in PORT_VARS}
    for n, var in PORT_VARS.items():
        monkeypatch.setenv(var, str(moved[n]))
    probes = health.parse_probes(DashboardSettings(_env_file=None).dashboard_service_probes)
    assert probes == [(n, moved[n], "/health") for n in PORT_VARS]
    for n, (cls, field) in own.items():  # the service binds what the dashboard probes
        assert getattr(cls(_env_file=None), field) == moved[n]
    explicit = DashboardSettings(_env_file=None, dashboard_service_probes="x=1/y").dashboard_service_probes
    assert explicit == "x=1/y"


async def test_every_probed_endpoint_is_served_by_that_services_http_app(monkeypatch):
    """Each service's HTTP server, started in-process the way the service starts it, on the port the dashboard
    probes: no probe meets a 404 or a closed port (the services are not connected, so some say 503, with a reason)."""
    from coinpulse_candle_agent.app import CandleAgent
    from coinpulse_candle_agent.settings import CandleSettings
    from coinpulse_common.avro import schema_text
    from coinpulse_crawl_dc import metrics as crawl_metrics
    from coinpulse_ingest_upbit.service import UpbitIngest
    from coinpulse_ingest_upbit.settings import IngestSettings
    from coinpulse_sink.service import SinkService
    from coinpulse_sink.settings import SinkSettings
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    for var in PORT_VARS.values():
        monkeypatch.setenv(var, str(free_port()))
    closed = free_port()  # Kafka and the registry on a closed port: nothing here may need them to serve health
    monkeypatch.setenv("COINPULSE_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed}")
    monkeypatch.setenv("COINPULSE_REGISTRY_URL", f"http://127.0.0.1:{closed}")
    d = DashboardSettings(_env_file=None)
    probes = health.parse_probes(d.dashboard_service_probes)
    assert {p[0] for p in probes} == set(PORT_VARS)

    s_ingest = IngestSettings(_env_file=None)
    reg = SchemaRegistryClient.new_client({"url": "mock://health"})  # the library's in-memory registry
    for stem, topic in (("trade", s_ingest.trade_topic), ("ticker", s_ingest.ticker_topic),
                        ("orderbook", s_ingest.orderbook_topic), ("raw_frame", s_ingest.raw_topic),
                        ("dead_letter", s_ingest.dlq_topic)):
        reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))
    quiet = Producer({"bootstrap.servers": f"127.0.0.1:{closed}", "log_level": 0})  # never produced to
    ingest = UpbitIngest(s_ingest, producer_=quiet, registry=reg)
    ingest_runner = await ingest._start_metrics()
    sink = SinkService(SinkSettings(_env_file=None))
    sink_thread = threading.Thread(target=sink._serve, daemon=True)
    sink_thread.start()
    wait_for(lambda: sink._http is not None, 30, "the sink's HTTP server to bind", every=0.02)
    if crawl_metrics._server is None:
        crawl_metrics.serve(int(d.crawl_metrics_port), d.host, ["bitcoin"], 60.0)
    crawl_port = crawl_metrics._server.server_address[1]
    agent = CandleAgent(CandleSettings(_env_file=None), trade_partitions=1)
    candle_runner = web.AppRunner(agent.app.web.web_app, access_log=None)
    await candle_runner.setup()
    await web.TCPSite(candle_runner, d.host, d.candle_metrics_port).start()
    try:
        probes = [(n, crawl_port if n == "crawl-dc" else port, path) for n, port, path in probes]
        async with aiohttp.ClientSession() as http:
            box = await health.services(http, d.host, probes, timeout_s=10)
            other = await health.probe(http, d.host, "candle-agent", d.candle_metrics_port, "/no-such-page", 10)
        items = {i["name"]: i for i in box["services"]}
        for name, item in items.items():
            assert item.get("status") in (200, 503), (name, item)
        # what each says while not connected: true, and a reason where it is not up
        assert items["ingest-upbit"]["state"] == "up"  # within its first minute it may still be connecting
        assert items["sink"]["state"] == "up" and items["sink"]["detail"]["ok"] is True
        assert items["crawl-dc"]["state"] == "up" and items["crawl-dc"]["detail"]["galleries"]["bitcoin"] == \
            {"last_success_age_s": None, "cycles": {}}
        assert items["candle-agent"]["state"] == "degraded"
        assert "no partition of upbit.trade assigned" in items["candle-agent"]["error"]
        assert other["status"] == 404 and "probe's URL is wrong" in other["error"]
    finally:
        await candle_runner.cleanup()
        await ingest_runner.cleanup()
        sink._http.shutdown()
        sink_thread.join(10)
