"""End to end in headless Chromium (Debian's /usr/bin/chromium), over the Chrome DevTools Protocol: the dashboard
process (`python -m coinpulse_dashboard`) serves a day of 1-minute data for 20 markets; the page must draw the
chart, fill the tables with the expected rows, show hostile post titles as inert text, follow a new candle live
(no reload), and switch timeframes. A screenshot goes to .coinpulse/screenshots/dashboard.png."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import httpx
import psycopg
import pytest
import websockets
from coinpulse_common.paths import state_dir
from coinpulse_dashboard import sample
from coinpulse_dashboard.browser import CANVAS_PIXELS, Page
from coinpulse_dashboard.browser import chromium as browser_chromium
from coinpulse_dashboard.browser import free_port as _free_port
from coinpulse_dashboard.browser import wait as _wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]



@pytest.fixture(scope="module")
def dashboard(stack, sample_day, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("dash") / "dashboard.log"
    env = {**os.environ, "COINPULSE_DASHBOARD_PORT": str(port), "COINPULSE_DASHBOARD_GOLD_SCHEMA": sample_day.schema,
           "COINPULSE_DASHBOARD_SILVER_SCHEMA": sample_day.schema, "COINPULSE_DASHBOARD_TICK_S": "0.5",
           "COINPULSE_DASHBOARD_HEALTH_S": "3"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "coinpulse_dashboard"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(up, 30, "the dashboard to listen")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def chromium():
    with browser_chromium() as endpoint:
        yield endpoint


def _expected_top(day: sample.SampleDay) -> list[str]:
    tv = {m: sum(r[6] for r in rows) for m, rows in day.candles_1m.items()}
    return sorted(tv, key=lambda m: -tv[m])[:10]


async def test_dashboard_in_chromium(stack, sample_day, dashboard, chromium):
    async with httpx.AsyncClient() as http:
        targets = (await http.get(f"{chromium}/json/list")).json()
    ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    async with websockets.connect(ws_url, max_size=64 << 20) as ws:
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=1600, height=1200, deviceScaleFactor=1,
                        mobile=False)
        await page.send("Page.navigate", url=f"{dashboard}/#KRW-BTC")
        await page.until("document.body && document.body.dataset.ready === '1' && window.coinpulse.bars.length > 0",
                         30, "the first render")

        # the chart: candles drawn on canvas (up and down colours), bars = the 1m candles of the day
        n_1m = len(sample_day.candles_1m["KRW-BTC"])
        assert await page.js("window.coinpulse.bars.length") == n_1m
        px = await page.until(f"(() => {{ const p = {CANVAS_PIXELS}; return p.up > 200 && p.down > 200 && p; }})()",
                              10, "candles on the canvas")
        assert px["canvases"] >= 2
        assert await page.js("window.coinpulse.mentions.size") > 100

        # the tables
        top = await page.js("[...document.querySelectorAll('#top-table tbody tr')].map(r => r.dataset.market)")
        assert top == _expected_top(sample_day)
        vol_rows = await page.js("document.querySelectorAll('#vol-table tbody tr').length")
        assert vol_rows == 10

        # hostile community text is shown as text, never run
        await page.until("document.querySelectorAll('#posts li').length > 5", 60, "posts")
        first_title = await page.js("document.querySelector('#posts li .pt').textContent")
        assert first_title == sample.XSS_TITLE
        assert await page.js("document.querySelectorAll('#posts script, #posts img').length") == 0
        assert await page.js("window.__pwned === undefined")

        # pipeline health is rendered (Connect and Prefect are up in the stack)
        await page.until("document.querySelectorAll('#health .hbox').length === 5", 60, "the health panel")
        health_text = await page.js("document.getElementById('health').textContent")
        assert "Connectors" in health_text and "Flow runs" in health_text and "unreachable" not in health_text

        # live: a new minute lands in PostgreSQL; the page follows without a reload
        marker = await page.js("window.__marker = Math.random(); window.__marker")
        last = sample_day.candles_1m["KRW-BTC"][-1]
        b = last[0] + timedelta(minutes=1)
        with psycopg.connect(stack.pg_dsn(), autocommit=True) as own:
            own.execute(
                f'INSERT INTO "{sample_day.schema}".candles VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '
                "%s, %s, %s, %s, now())",
                ("KRW-BTC", "1m", b, last[4], last[4] * 1.01, last[4] * 0.999, last[4] * 1.008, 1.0, last[4], last[4],
                 7, 0.5, 0.5, b, b, 0))
            own.execute(f'INSERT INTO "{sample_day.schema}".mentions_1m VALUES (%s, %s, 42, 5, 3, 9, 1, 0.8, 0, now())',
                        ("KRW-BTC", b))
        await page.until(f"window.coinpulse.bars.at(-1).time === {int(b.timestamp())}", 60, "the live candle")
        await page.until(f"(window.coinpulse.mentions.get({int(b.timestamp())}) || {{}}).mentions === 42", 60,
                         "the live mention")
        assert await page.js("window.__marker") == marker  # same document: no reload
        assert await page.js("window.coinpulse.bars.length") == n_1m + 1

        # screenshot of the 1m view, then the timeframe switch
        shot = await page.send("Page.captureScreenshot", format="png")
        out = state_dir() / "screenshots" / "dashboard.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        import base64

        out.write_bytes(base64.b64decode(shot["data"]))
        assert out.stat().st_size > 20_000

        await page.js("document.querySelector('#tf-group button[data-tf=\"1h\"]').click()")
        await page.until("window.coinpulse.tf === '1h' && window.coinpulse.bars.length > 0 && "
                         "window.coinpulse.bars.length < 30", 10, "the 1h candles")
        assert await page.js("window.coinpulse.bars.length") in (24, 25)
