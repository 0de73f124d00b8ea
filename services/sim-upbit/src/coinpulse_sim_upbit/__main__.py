"""`python -m coinpulse_sim_upbit`: the local Upbit simulator (WebSocket + REST), or a recording generator.

    python -m coinpulse_sim_upbit [--recording FILE | --scenario PATH [--history-hours H]] [--speed X] [--port N]
        [--seed S] [--markets ...]
        [--disconnect-every S | --disconnect-every-frames N] [--min-disconnects K] [--duplicate-rate P] [--reorder-window N] [--malformed-rate P] [--rest-429-rate P]
    python -m coinpulse_sim_upbit --generate-recording OUT --minutes M [--seed S] [--markets ...]

`--scenario default` (or a .toml path) serves the market of the shared simulated world (coinpulse_simworld), in
wall-clock time, with `--history-hours` of past trades behind `/v1/trades/ticks`; sim-dcinside started with the
same scenario serves the community of the same world.

The default demo dataset is `services/sim-upbit/data/default.jsonl.gz`, made by
    python -m coinpulse_sim_upbit --generate-recording services/sim-upbit/data/default.jsonl.gz --minutes 60 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

from aiohttp import web
from coinpulse_common.logging import configure, get_logger
from coinpulse_common.settings import get_settings

from coinpulse_sim_upbit.feed import run_feed
from coinpulse_sim_upbit.fields import msg_type
from coinpulse_sim_upbit.hub import Faults, Hub
from coinpulse_sim_upbit.market import MarketGenerator
from coinpulse_sim_upbit.recording import SequentialIds, generate_recording, read_recording, shift_times
from coinpulse_sim_upbit.server import SimServer

log = get_logger("coinpulse.sim_upbit")
DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "data" / "default.jsonl.gz"


def _markets(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [c.strip().upper() for v in values for c in v.split(",") if c.strip()]
    return out or None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="coinpulse sim upbit", description=__doc__.split("\n")[0])
    p.add_argument("--recording", help="replay this recording (JSON lines, .gz ok); 'default' = the shipped dataset")
    p.add_argument("--scenario", metavar="PATH",
                   help="serve the shared simulated world of this scenario ('default' = the shipped one) in wall time")
    p.add_argument("--history-hours", type=float, default=0.0,
                   help="scenario: hours of past trades served by /v1/trades/ticks before the live feed")
    p.add_argument("--speed", type=float, default=1.0, help="replay/generation speed; 0 = as fast as possible")
    p.add_argument("--rate", type=float, default=0.0, help="pace at exactly this many frames/s (overrides --speed)")
    p.add_argument("--port", type=int, default=None, help="port (default COINPULSE_SIM_UPBIT_PORT or 28090)")
    p.add_argument("--host", default="127.0.0.1", help="bind address")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated market and the fault knobs")
    p.add_argument("--markets", nargs="*", help="market codes (space or comma separated)")
    p.add_argument("--disconnect-every", type=float, default=0.0, help="close each connection after S seconds")
    p.add_argument("--disconnect-every-frames", type=int, default=0,
                   help="close each connection after sending it N frames (the same faults on any machine)")
    p.add_argument("--min-disconnects", type=int, default=0,
                   help="--duration/--limit end the feed only after this many forced disconnects")
    p.add_argument("--duplicate-rate", type=float, default=0.0, help="probability a frame is sent twice")
    p.add_argument("--reorder-window", type=int, default=0, help="shuffle frames within windows of N")
    p.add_argument("--malformed-rate", type=float, default=0.0, help="probability of injecting a malformed frame")
    p.add_argument("--rest-429-rate", type=float, default=0.0, help="probability a REST request gets 429")
    p.add_argument("--duration", type=float, default=0.0, help="stop publishing after S wall seconds (0: never)")
    p.add_argument("--limit", type=int, default=0, help="stop publishing after N frames (0: never)")
    p.add_argument("--wait-clients", action="store_true", help="start publishing when the first client subscribes")
    p.add_argument("--restamp", action="store_true", help="stamp message times with the send time (latency bench)")
    p.add_argument("--keep-times", action="store_true", help="replay recorded times and sequential ids as-is (default: shift to now, new ids)")
    p.add_argument("--generate-recording", metavar="OUT", help="write a generated recording and exit")
    p.add_argument("--minutes", type=float, default=60.0, help="length of --generate-recording")
    p.add_argument("--format", default="SIMPLE", choices=["SIMPLE", "DEFAULT"], help="names in a generated recording")
    return p.parse_args(argv)


def _recording_events(path: Path, markets: list[str] | None, keep_times: bool, hub: Hub, now_ms: int | None = None):
    rows = [(int(ts * 1000), m) for ts, m in read_recording(path) if not markets or m.get("code") in markets]
    if not rows:
        raise SystemExit(f"{path}: no frames")
    offset = 0 if keep_times else (now_ms if now_ms is not None else int(time.time() * 1000)) - rows[0][0]
    hub.markets = sorted({str(m.get("code")) for _, m in rows if m.get("code")})
    for _, m in rows:  # seed /v1/ticker/all before the first ticker is replayed
        if msg_type(m) == "ticker" and m["code"] not in hub.tickers:
            hub.tickers[m["code"]] = shift_times(m, offset)
    log.info("recording_loaded", path=str(path), frames=len(rows), markets=len(hub.markets), shift_ms=offset)
    if keep_times:
        return iter(rows)
    ids = SequentialIds()  # shifted in time: a new set of trades with ids of their own
    return ((t, ids.assign(shift_times(m, offset))) for t, m in rows)


async def serve(args: argparse.Namespace) -> None:
    hub = Hub(Faults(disconnect_every_s=args.disconnect_every, disconnect_every_frames=args.disconnect_every_frames,
                     duplicate_rate=args.duplicate_rate, reorder_window=args.reorder_window,
                     malformed_rate=args.malformed_rate, rest_429_rate=args.rest_429_rate,
                     min_disconnects=args.min_disconnects), seed=args.seed)
    markets = _markets(args.markets)
    wall_clock = False
    if args.scenario:
        # imported here: the other modes run without the simworld package
        from coinpulse_simworld import ScenarioError, World, load_scenario

        from coinpulse_sim_upbit.scenario import ScenarioMarket

        try:
            world = World(load_scenario(args.scenario).subset(markets))
        except ScenarioError as e:
            raise SystemExit(f"--scenario: {e}") from None
        sm = ScenarioMarket(world, history_hours=args.history_hours)
        hub.markets = list(sm.codes)
        hub.tickers.update(sm.initial_tickers())
        hub.past = sm.past_trades
        events = sm.events()
        wall_clock = True
        log.info("scenario_loaded", scenario=world.scenario.source, seed=world.scenario.seed,
                 markets=len(hub.markets), history_hours=args.history_hours, start_ms=sm.start_ms)
    elif args.recording:
        path = DEFAULT_DATASET if args.recording == "default" else Path(args.recording)
        events = _recording_events(path, markets, args.keep_times, hub)
    else:
        gen = MarketGenerator(markets, seed=args.seed)
        hub.markets = list(gen.markets)
        for code, m in gen.markets.items():
            hub.tickers[code] = {"trade_price": m.price, "acc_trade_price_24h": m.rate * 150_000 * 86_400,
                                 "timestamp": gen.start_ms}
        events = gen.events()
    server = SimServer(hub)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    port = args.port or get_settings().sim_upbit_port
    await web.TCPSite(runner, args.host, port).start()
    log.info("listening", url=f"ws://{args.host}:{port}/websocket/v1", markets=len(hub.markets),
             source=args.scenario and f"scenario {args.scenario}" or args.recording or "generated")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    feed = asyncio.create_task(run_feed(hub, events, args.speed, args.rate, args.duration, args.restamp,
                                        server.subscribed if args.wait_clients else None, args.limit,
                                        wall_clock=wall_clock))
    await stop.wait()
    feed.cancel()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scenario and args.recording:
        raise SystemExit("--scenario and --recording are two different sources: give one")
    if args.history_hours < 0 or (args.history_hours and not args.scenario):
        raise SystemExit("--history-hours needs --scenario and must be >= 0")
    configure()
    if args.generate_recording:
        n = generate_recording(args.generate_recording, args.minutes, seed=args.seed, markets=_markets(args.markets),
                               fmt=args.format)
        log.info("recording_written", path=args.generate_recording, frames=n)
        return
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
