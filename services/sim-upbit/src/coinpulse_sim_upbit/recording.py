"""Recordings: JSON lines `{"recv_ts": <epoch s>, "msg": <decoded frame>}` (optionally gzip), DEFAULT or SIMPLE names.

`generate_recording` writes one from the seeded market generator, byte-for-byte reproducible for a given seed,
start time and length.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from coinpulse_sim_upbit.fields import msg_type, to_default, to_simple
from coinpulse_sim_upbit.market import MarketGenerator

DEFAULT_START_MS = 1_747_785_600_000  # 2025-05-21T00:00:00Z


def _open(path: Path, mode: str):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


def read_recording(path: str | Path) -> Iterator[tuple[float, dict[str, Any]]]:
    """(recv_ts, DEFAULT-named message) per line; lines that are not a frame object are skipped."""
    with _open(Path(path), "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            row = orjson.loads(line)
            msg = row.get("msg")
            if isinstance(msg, dict):
                yield float(row.get("recv_ts", 0.0)), to_default(msg)


def shift_times(msg: dict[str, Any], offset_ms: int) -> dict[str, Any]:
    """Move a DEFAULT message's times by `offset_ms` (and its date/time strings with them)."""
    if not offset_ms:
        return msg
    m = dict(msg)
    for k in ("timestamp", "trade_timestamp"):
        if isinstance(m.get(k), int):
            m[k] += offset_ms
    ty = msg_type(m)
    if isinstance(m.get("trade_timestamp"), int):
        g = time.gmtime(m["trade_timestamp"] / 1000)
        if ty == "trade":
            m["trade_date"], m["trade_time"] = time.strftime("%Y-%m-%d", g), time.strftime("%H:%M:%S", g)
        elif ty == "ticker":
            m["trade_date"], m["trade_time"] = time.strftime("%Y%m%d", g), time.strftime("%H%M%S", g)
    return m


class SequentialIds:
    """Upbit-style trade ids for a replay shifted in time: trade time in ms × 1000 + a per-market counter.

    A replay moved to another time is a new set of trades, so it gets new ids, derived from the shifted trade time
    the way Upbit derives them: replays whose published trades do not overlap in time (a demo replaying at speed 1,
    stopped, then started again) never share a `sequential_id`, and none reuses the recording's own ids. Ids stay
    strictly increasing per market in replay order, as Upbit's do.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def assign(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg_type(msg) != "trade" or not isinstance(msg.get("trade_timestamp"), int):
            return msg
        code = str(msg.get("code", ""))
        sid = max(msg["trade_timestamp"] * 1000, self._last.get(code, -1) + 1)
        self._last[code] = sid
        return dict(msg, sequential_id=sid)


def generate_recording(out: str | Path, minutes: float, seed: int = 1, markets: list[str] | None = None,
                       fmt: str = "SIMPLE", start_ms: int = DEFAULT_START_MS, ticker_interval_s: float = 5.0,
                       orderbook_interval_s: float = 30.0, rate_scale: float = 0.5) -> int:
    """Write `minutes` of generated market to `out`; returns the number of frames."""
    gen = MarketGenerator(markets, seed=seed, start_ms=start_ms, ticker_interval_s=ticker_interval_s,
                          orderbook_interval_s=orderbook_interval_s, rate_scale=rate_scale)
    end = start_ms + int(minutes * 60_000)
    n = 0
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = open(path, "wb")  # noqa: SIM115
    f = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else raw
    try:
        for t, msg in gen.events():
            if t >= end:
                break
            recv = (msg.get("timestamp", t) + 7) / 1000.0
            f.write(orjson.dumps({"recv_ts": round(recv, 3), "msg": to_simple(msg) if fmt == "SIMPLE" else msg}))
            f.write(b"\n")
            n += 1
    finally:
        if f is not raw:
            f.close()
        raw.close()
    return n
