"""crawl-dc benchmark.

1. Pages parsed per second, offline: coinpulse's lxml/XPath parsers vs a straightforward BeautifulSoup parse
   (bs4 + lxml backend, CSS selectors) of the same generated list and view pages, in the same run. bs4 is a peer,
   so it lives in its own venv under bench/results/ (created on first run), never in the workspace.
2. Requests per new post in a realistic 5-minute cycle: the simulator grows by a typical interval's posts and
   comments, the real crawler runs one cycle against it (needs the stack: `uv run coinpulse up`), the simulator
   counts the requests it served.

Run: `uv run python bench/crawl_dc.py` (add `--no-cycle` to skip part 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

from coinpulse_dcinside import parse_list, parse_view
from coinpulse_sim_dcinside import render
from coinpulse_sim_dcinside.community import KST, Community
from coinpulse_testing.net import free_port, get_json
from coinpulse_testing.procs import spawn_python, stop
from coinpulse_testing.wait import wait_for

ROOT = Path(__file__).resolve().parent
VENV = ROOT / "results" / "venv-crawl-dc"
PEER = r'''
import json, sys, time
from pathlib import Path
from bs4 import BeautifulSoup

def parse_list(html):
    soup = BeautifulSoup(html, "lxml")
    rows = []
    for tr in soup.select("tr.ub-content"):
        num = tr.select_one("td.gall_num")
        if not num or not num.get_text(strip=True).isdigit():
            continue
        a = tr.select_one("td.gall_tit > a:not(.reply_numbox)")
        w = tr.select_one("td.gall_writer")
        d = tr.select_one("td.gall_date")
        r = tr.select_one("span.reply_num")
        rows.append({"no": int(tr.get("data-no")), "title": a.get_text(" ", strip=True), "nick": w.get("data-nick"),
                     "date": d.get("title"), "reply": r.get_text(strip=True) if r else "",
                     "views": tr.select_one("td.gall_count").get_text(strip=True)})
    return rows

def parse_view(html):
    soup = BeautifulSoup(html, "lxml")
    body = soup.select_one(".gallview_contents .write_div")
    for bad in body.select("script, style, iframe, .adv_area"):
        bad.decompose()
    w = soup.select_one("header .gall_writer")
    tok = soup.select_one("input[name=e_s_n_o]")
    return {"title": soup.select_one("header .title_subject").get_text(strip=True), "nick": w.get("data-nick"),
            "date": soup.select_one("header .gall_date").get("title"), "body": body.get_text("\n", strip=True),
            "images": [i.get("src") for i in body.select("img")], "token": tok.get("value") if tok else None}

d = Path(sys.argv[1]); rounds = int(sys.argv[2])
lists = [p.read_bytes() for p in sorted(d.glob("list_*.html"))]
views = [p.read_bytes() for p in sorted(d.glob("view_*.html"))]
out = {}
for name, pages, fn in (("list", lists, parse_list), ("view", views, parse_view)):
    best = None
    for _ in range(rounds):
        t = time.perf_counter(); n = sum(len(fn(p)) > 0 for p in pages); dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    out[name] = {"pages": len(pages), "seconds": best, "pages_per_s": len(pages) / best,
                 "rows": sum(len(parse_list(p)) for p in pages) if name == "list" else None}
print(json.dumps(out))
'''


def make_pages(d: Path, n_lists: int = 20, n_views: int = 200) -> None:
    c = Community([("bitcoins_new1", "normal")], seed=3, start=datetime(2026, 1, 5, 9, 0, tzinfo=KST))
    c.advance("bitcoins_new1", posts=n_lists * 50, comments=3 * n_views, recent=n_views)
    for page in range(1, n_lists + 1):
        (d / f"list_{page:03d}.html").write_text(render.list_page(c, "bitcoins_new1", page, 50))
    for i, p in enumerate(sorted(c.live_posts("bitcoins_new1"), key=lambda p: -p.no)[:n_views]):
        (d / f"view_{i:04d}.html").write_text(render.view_page(c, "bitcoins_new1", p))


def ours(d: Path, rounds: int) -> dict:
    lists = [p.read_bytes() for p in sorted(d.glob("list_*.html"))]
    views = [p.read_bytes() for p in sorted(d.glob("view_*.html"))]
    out = {}
    for name, pages, fn in (("list", lists, lambda b: parse_list(b, "u").rows),
                            ("view", views, lambda b: [parse_view(b, "u")])):
        best = None
        for _ in range(rounds):
            t = time.perf_counter()
            sum(len(fn(p)) > 0 for p in pages)
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        out[name] = {"pages": len(pages), "seconds": best, "pages_per_s": len(pages) / best,
                     "rows": sum(len(parse_list(p, "u").rows) for p in pages) if name == "list" else None}
    return out


def peer(d: Path, rounds: int) -> dict:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(["uv", "venv", "-q", "--python", "3.11", str(VENV)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--python", str(py), "beautifulsoup4", "lxml"], check=True)
    script = d / "peer.py"
    script.write_text(PEER)
    r = subprocess.run([str(py), str(script), str(d), str(rounds)], check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def http(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def cycle_requests() -> dict:
    """One realistic cycle: 20 new posts and 60 comments in 5 minutes (a busy hour on a coin gallery)."""
    from coinpulse_common.avro import registry_client, topic_schema
    from coinpulse_common.kafka import admin
    from coinpulse_common.settings import get_settings
    from coinpulse_common.topics import DC_COMMENT, DC_CRAWL_RUN, DC_POST, DC_RAW
    from confluent_kafka.admin import NewTopic
    from confluent_kafka.schema_registry import Schema

    s = get_settings()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    bases = (DC_RAW, DC_POST, DC_COMMENT, DC_CRAWL_RUN)
    a = admin(s)
    for f in a.create_topics([NewTopic(prefix + b, 1, 1) for b in bases]).values():
        f.result(30)
    for b in bases:
        registry_client(s.registry).register_schema(f"{prefix}{b}-value", Schema(topic_schema(b), "AVRO"))
    port = free_port()
    tmp = Path(tempfile.mkdtemp())
    sim = spawn_python(["-m", "coinpulse_sim_dcinside", "--port", str(port), "--galleries", "bitcoins_new1:normal",
                        "--posts-per-minute", "0", "--comments-per-minute", "0", "--initial-posts", "150",
                        "--initial-comments", "400"], tmp / "sim.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get_json(f"{url}/sim/state", timeout=10), 30, "the gallery simulator", 0.1)
        env = dict(os.environ, COINPULSE_DC_BASE_URL=url, COINPULSE_DC_GALLERIES="bitcoins_new1:normal",
                   COINPULSE_DC_DOWNLOAD_DELAY_S="0", COINPULSE_DC_TOPIC_PREFIX=prefix,
                   COINPULSE_DC_TRANSACTIONAL_ID=f"bench-{prefix}", COINPULSE_DC_STATE_PATH=str(tmp / "s.db"),
                   COINPULSE_CRAWL_METRICS_PORT="0", COINPULSE_DC_BACKFILL_PAGES="2", COINPULSE_DC_LIST_PAGE_ROWS="100",
                   COINPULSE_DC_RECENT_PAGES="1", COINPULSE_LOG_LEVEL="WARNING")
        cmd = [sys.executable, "-m", "coinpulse_crawl_dc", "--once"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        http(f"{url}/sim/advance", {"posts": 20, "comments": 60})
        http(f"{url}/sim/control", {"reset_counters": True})
        t = time.monotonic()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        secs = time.monotonic() - t
        req = http(f"{url}/sim/state")["requests"]
    finally:
        stop(sim, 10)
        a.delete_topics([prefix + b for b in bases])
    total = req.get("total", 0)
    return {"new_posts": 20, "new_comments": 60, "requests": dict(req), "requests_per_new_post": total / 20,
            "cycle_seconds_without_delay": round(secs, 2)}


def main() -> None:
    rounds = 5
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        make_pages(d)
        a, b = ours(d, rounds), peer(d, rounds)
    print("offline parse, best of", rounds, "rounds (same generated pages):")
    print(f"  {'page':<5} {'pages':>6} {'coinpulse p/s':>14} {'bs4+lxml p/s':>13} {'ratio':>6}")
    for k in ("list", "view"):
        print(f"  {k:<5} {a[k]['pages']:>6} {a[k]['pages_per_s']:>14.1f} {b[k]['pages_per_s']:>13.1f} "
              f"{a[k]['pages_per_s'] / b[k]['pages_per_s']:>5.1f}x")
    assert a["list"]["rows"] == b["list"]["rows"], (a["list"]["rows"], b["list"]["rows"])
    print(f"  (both parsers found {a['list']['rows']} post rows in the list pages)")
    if "--no-cycle" not in sys.argv:
        r = cycle_requests()
        print("realistic cycle (20 new posts, 60 new comments since the last cycle):")
        print(f"  requests served: {r['requests']}")
        print(f"  requests per new post: {r['requests_per_new_post']:.2f} (goal <= 2 + one per comment page)")


if __name__ == "__main__":
    main()
