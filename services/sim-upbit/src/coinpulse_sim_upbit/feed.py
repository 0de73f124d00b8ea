"""Drive the hub: publish events from the generator or a recording, paced by event time / speed or a fixed rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from coinpulse_common.logging import get_logger

from coinpulse_sim_upbit.fields import msg_type
from coinpulse_sim_upbit.hub import Hub

log = get_logger("coinpulse.sim_upbit.feed")


def _faults_done(hub: Hub) -> bool:
    return hub.stats.disconnects_forced >= hub.faults.min_disconnects


async def run_feed(hub: Hub, events: Iterable[tuple[int, dict[str, Any]]], speed: float = 1.0, rate: float = 0.0,
                   duration_s: float = 0.0, restamp: bool = False, start: asyncio.Event | None = None,
                   limit: int = 0, wall_clock: bool = False) -> int:
    """Publish `(pace time ms, DEFAULT message)` events. speed 0 and rate 0: as fast as clients take them.

    rate > 0 paces at exactly `rate` frames/s; restamp sets each message's timestamps to the send time (latency
    benchmarks); duration_s stops after that many wall seconds, limit after that many frames, either of them only once
    `hub.faults.min_disconnects` forced disconnects have happened (so a test gets the faults it configured however
    slow the machine).
    """
    if start is not None:
        await start.wait()
    t0 = time.monotonic()
    t0_ev: int | None = int(time.time() * 1000) if wall_clock and speed == 1 and rate <= 0 else None
    n = 0
    for t, msg in events:
        if t0_ev is None:
            t0_ev = t
        if rate > 0:
            due = t0 + n / rate
        elif speed > 0:
            due = t0 + (t - t0_ev) / 1000.0 / speed
        else:
            due = 0.0
        now = time.monotonic()
        if hub.finish_requested or (duration_s and now - t0 >= duration_s and _faults_done(hub)):
            break
        if due - now > 0.0005:
            await asyncio.sleep(due - now)
        elif n & 255 == 0:
            if due == 0.0:
                await hub.backpressure()
            await asyncio.sleep(0)
        if restamp:
            ms = int(time.time() * 1000)
            msg = dict(msg, timestamp=ms)
            if "trade_timestamp" in msg:
                msg["trade_timestamp"] = ms
        hub.publish(msg_type(msg) or "unknown", str(msg.get("code", "")), msg)
        n += 1
        if limit and n >= limit and _faults_done(hub):
            break
    # let clients drain what was published before declaring the feed done
    await hub.backpressure()
    hub.stats.done = True
    log.info("feed_done", frames=n, seconds=round(time.monotonic() - t0, 3))
    return n
