"""A minimal headless-Chromium driver over the Chrome DevTools Protocol, for the dashboard's browser tests and
for screenshots of a running dashboard (Debian's /usr/bin/chromium; no browser downloads)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from coinpulse_testing.wait import wait_for

CHROMIUM = os.environ.get("COINPULSE_CHROMIUM", "/usr/bin/chromium")


class Page:
    """A minimal CDP client: one page target, request/response by id, events ignored."""

    def __init__(self, ws: Any) -> None:  # a websockets client connection
        self.ws, self.ids = ws, itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        i = next(self.ids)
        await self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    async def js(self, expr: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def until(self, expr: str, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = await self.js(expr)
            if v:
                return v
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {expr}")


@contextlib.asynccontextmanager
async def open_page(endpoint: str, width: int = 1600, height: int = 1200) -> AsyncIterator[Page]:
    """The first page target of the browser at `endpoint` (chromium()'s DevTools URL) over CDP, with the Page and
    Runtime domains enabled and a `width` x `height` viewport."""
    import httpx
    import websockets

    async with httpx.AsyncClient() as http:
        targets = (await http.get(f"{endpoint}/json/list")).json()
    ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    async with websockets.connect(ws_url, max_size=64 << 20) as ws:
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=False)
        yield page


CANVAS_PIXELS = """(() => {
  let up = 0, down = 0;
  for (const c of document.querySelectorAll('#chart canvas')) {
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - 38) < 4 && Math.abs(d[i+1] - 194) < 4 && Math.abs(d[i+2] - 129) < 4) up++;
      if (Math.abs(d[i] - 240) < 4 && Math.abs(d[i+1] - 90) < 4 && Math.abs(d[i+2] - 90) < 4) down++;
    }
  }
  return {up, down, canvases: document.querySelectorAll('#chart canvas').length};
})()"""


def canvas_colour_pixels(rgb: tuple[int, int, int], tol: int = 4) -> str:
    """A JS expression counting the chart canvases' pixels of one colour (markers, lines of a given series)."""
    r, g, b = rgb
    return f"""(() => {{
  let n = 0;
  for (const c of document.querySelectorAll('#chart canvas')) {{
    if (!c.width || !c.height) continue;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) {{
      if (d[i+3] > 200 && Math.abs(d[i] - {r}) < {tol} && Math.abs(d[i+1] - {g}) < {tol} && Math.abs(d[i+2] - {b}) < {tol}) n++;
    }}
  }}
  return n;
}})()"""


async def screenshot(page: Page, path: Path, selector: str | None = None) -> Path:
    """A PNG of the whole page (beyond the viewport), or of the box around the elements matching `selector`."""
    import base64

    if selector is None:
        box = await page.js("({x: 0, y: 0, width: document.documentElement.scrollWidth, "
                            "height: document.documentElement.scrollHeight})")
    else:
        box = await page.js(f"""(() => {{
          const rs = [...document.querySelectorAll({json.dumps(selector)})].map((e) => e.getBoundingClientRect());
          const x = Math.min(...rs.map((r) => r.left)), y = Math.min(...rs.map((r) => r.top)) + window.scrollY;
          return {{x: Math.max(0, x - 8), y: Math.max(0, y - 8), width: Math.max(...rs.map((r) => r.right)) - x + 16,
                   height: Math.max(...rs.map((r) => r.bottom)) + window.scrollY - y + 16}};
        }})()""")
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                           clip={**box, "scale": 1})
    data = base64.b64decode(shot["data"])

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    await asyncio.to_thread(write)
    return path


@contextlib.contextmanager
def chromium(width: int = 1600, height: int = 1200) -> Iterator[str]:
    """Start headless Chromium; yields its DevTools HTTP endpoint."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(f"{CHROMIUM} missing: apt-get install -y chromium (or set COINPULSE_CHROMIUM)")
    profile = Path(tempfile.mkdtemp(prefix="coinpulse-chromium-"))
    log = profile / "chromium.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0",
                                 "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
                                 f"--window-size={width},{height}", "about:blank"], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.is_file() and port_file.read_text().strip(), 30, "chromium's DevTools port", 0.1)
        yield f"http://127.0.0.1:{int(port_file.read_text().split()[0])}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
