"""End to end in headless Chromium (Debian's /usr/bin/chromium), over the Chrome DevTools Protocol: the dashboard
process (`python -m coinpulse_dashboard`) serves a day of 1-minute data for 20 markets and its link marts; the page
must draw the chart, fill the tables with the expected rows, show hostile post titles as inert text, show the
price–community link (spike markers on the candles, rolling correlation pane, lead–lag bars with the verdict in
words, the ranking of links), follow a new candle and a rebuilt link mart live (no reload), and switch markets,
metrics and timeframes. Screenshots go to .coinpulse/screenshots/dashboard.png (whole page) and
dashboard_link.png (the lead–lag panel and the ranking)."""

from __future__ import annotations

import os
from datetime import timedelta

import httpx
import psycopg
import pytest
from coinpulse_common.paths import state_dir
from coinpulse_testing import sample
from coinpulse_testing.browser import CANVAS_PIXELS, canvas_colour_pixels, open_page, screenshot
from coinpulse_testing.browser import chromium as browser_chromium
from coinpulse_testing.net import free_port
from coinpulse_testing.procs import spawn_python, stop
from coinpulse_testing.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]



@pytest.fixture(scope="module")
def dashboard(stack, sample_day, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("dash") / "dashboard.log"
    env = {**os.environ, "COINPULSE_DASHBOARD_PORT": str(port), "COINPULSE_DASHBOARD_GOLD_SCHEMA": sample_day.schema,
           "COINPULSE_DASHBOARD_SILVER_SCHEMA": sample_day.schema, "COINPULSE_DASHBOARD_MARTS_SCHEMA": sample_day.schema,
           "COINPULSE_DASHBOARD_TICK_S": "0.5",
           "COINPULSE_DASHBOARD_HEALTH_S": "3"}
    proc = spawn_python(["-m", "coinpulse_dashboard"], log, env)
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 30, "the dashboard to listen", 0.1)
        yield url
    finally:
        stop(proc, 10)


@pytest.fixture(scope="module")
def chromium():
    with browser_chromium() as endpoint:
        yield endpoint


def _expected_top(day: sample.SampleDay) -> list[str]:
    tv = {m: sum(r[6] for r in rows) for m, rows in day.candles_1m.items()}
    return sorted(tv, key=lambda m: -tv[m])[:10]


def _expected_link_ranking(day: sample.SampleDay, metric: str = "mentions_absret") -> list[str]:
    rows = {m: r for (m, mt), r in day.link_summary.items() if mt == metric}
    sig = ("community_leads", "community_follows", "together")
    return sorted(rows, key=lambda m: (rows[m]["verdict"] not in sig, rows[m]["verdict"] == "insufficient_data",
                                       -abs(rows[m]["best_corr"] or 0), m))


SPIKE_RGB = (0xFF, 0x5C, 0xD6)  # COLORS.spike in app.js
ROLL_RGB = (0xC3, 0x9B, 0xFF)  # COLORS.rcMen


async def test_dashboard_in_chromium(stack, sample_day, dashboard, chromium):
    async with open_page(chromium, 1600, 1200) as page:
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

        # the link: lead–lag bars of KRW-BTC (31 lags, 2..4 significant, each with a marker) and the verdict in words
        await page.until("document.querySelectorAll('#lag-chart rect.lagbar').length === 31", 30, "the lead–lag bars")
        assert await page.js("document.getElementById('link-sentence').textContent") == "community leads by 3 min"
        assert await page.js("document.getElementById('link-p').textContent") == "p = 0.003 (Bonferroni over 31 lags)"
        sig = await page.js("[...document.querySelectorAll('#lag-chart rect.lagbar.sig')].map(r => +r.dataset.lag)")
        want_sig = [k for k, _, _, _, s in sample_day.lead_lag[("KRW-BTC", "mentions_absret")] if s]
        assert sig == want_sig == [2, 3, 4]
        assert await page.js("[...document.querySelectorAll('#lag-chart .star')].map(r => +r.dataset.lag)") == want_sig
        assert await page.js("getComputedStyle(document.querySelector('#lag-chart rect.lagbar.sig')).fill") != \
            await page.js("getComputedStyle(document.querySelector('#lag-chart rect.lagbar.ns')).fill")

        # the ranking of links: significant first, then |r|
        await page.until("document.querySelectorAll('#link-table tbody tr[data-market]').length > 0", 30, "the ranking")
        ranking = await page.js("[...document.querySelectorAll('#link-table tbody tr')].map(r => r.dataset.market)")
        assert ranking == _expected_link_ranking(sample_day)
        first_row = await page.js("document.querySelector('#link-table tbody tr').textContent")
        assert first_row.startswith("1KRW-BTCleads 3 min0.420.003"), first_row

        # spike markers on the candles (one per spike minute: every BTC minute has a candle) and drawn in view
        spikes = sample_day.spikes["KRW-BTC"]
        await page.until(f"window.coinpulse.spikeMarkers === {len(spikes)}", 30, "the spike markers")
        assert await page.js("document.getElementById('spike-count').textContent") == str(len(spikes))
        first_visible = sample_day.candles_1m["KRW-BTC"][-240][0]
        assert any(b >= first_visible for b, _, _ in spikes), "the sample has no spike in the visible range"
        await page.until(f"{canvas_colour_pixels(SPIKE_RGB)} > 20", 10, "spike markers on the canvas")

        # rolling correlation pane, on the same time axis: one point per candle minute
        assert await page.js("window.coinpulse.rolling.size") == len(sample_day.rolling["KRW-BTC"])
        await page.until(f"{canvas_colour_pixels(ROLL_RGB)} > 100", 10, "the rolling correlation line")
        assert await page.js("document.querySelectorAll('#chart canvas').length") >= px["canvases"]

        # screenshots: the whole page, and the link panel with the ranking
        shots = state_dir() / "screenshots"
        out = await screenshot(page, shots / "dashboard.png")
        assert out.stat().st_size > 50_000
        link_png = await screenshot(page, shots / "dashboard_link.png", "#link-card, .rank-card")
        assert link_png.stat().st_size > 10_000

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

        # live: the link marts are rebuilt (a new spike, a new verdict); the page follows without a reload
        with psycopg.connect(stack.pg_dsn(), autocommit=True) as own:
            own.execute(f'INSERT INTO "{sample_day.schema}".mention_spikes (market, bucket_start, mentions, '
                        "baseline_mean, baseline_std, zscore, detected_at) VALUES ('KRW-BTC', %s, 42, 2, 2.5, 16, now())",
                        (b,))
            own.execute(f'UPDATE "{sample_day.schema}".link_summary SET verdict = %s, best_lag = -4, '
                        "as_of = as_of + interval '1 minute' WHERE market = 'KRW-BTC' AND metric = 'mentions_absret'",
                        ("community_follows",))
        await page.until("document.getElementById('link-sentence').textContent === 'community follows by 4 min'", 60,
                         "the rebuilt verdict")
        await page.until(f"window.coinpulse.spikeMarkers === {len(spikes) + 1}", 60, "the new spike marker")
        assert await page.js("window.__marker") == marker

        # another coin from the ranking, another metric
        await page.js("document.querySelector('#link-table tbody tr[data-market=\"KRW-ETH\"]').click()")
        await page.until("document.getElementById('link-sentence').textContent === 'community follows by 2 min'", 30,
                         "KRW-ETH's verdict")
        assert await page.js("document.querySelector('#link-table tr.sel').dataset.market") == "KRW-ETH"
        await page.until("window.coinpulse.bars.length > 0 && window.coinpulse.market === 'KRW-ETH'", 30, "KRW-ETH")
        await page.js("document.querySelector('#metric-group button[data-metric=\"mentions_ret\"]').click()")
        await page.until("document.getElementById('link-sentence').textContent === 'no significant link'", 30,
                         "KRW-ETH mentions vs return")
        await page.until("document.querySelector('#link-table tbody tr').dataset.market === 'KRW-DOGE'", 30,
                         "the mentions vs return ranking")

        await page.js("document.querySelector('#tf-group button[data-tf=\"1h\"]').click()")
        await page.until("window.coinpulse.tf === '1h' && window.coinpulse.bars.length > 0 && "
                         "window.coinpulse.bars.length < 30", 10, "the 1h candles")
        assert await page.js("window.coinpulse.bars.length") in (24, 25)

        # a malformed #fragment (a broken %-escape) is no coin: the page opens on the default coin, no error
        await page.send("Page.navigate", url=f"{dashboard}/?again=1#%E0%A4%A")
        await page.until("document.body && document.body.dataset.ready === '1' && window.coinpulse.bars.length > 0 "
                         "&& window.coinpulse.market === " + repr(_expected_top(sample_day)[0]), 30,
                         "the page opened on a malformed fragment")
