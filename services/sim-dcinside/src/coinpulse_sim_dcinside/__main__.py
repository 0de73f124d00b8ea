"""`python -m coinpulse_sim_dcinside [--port N] [--seed S] [--throttle] [--posts-per-minute R] ...`
`python -m coinpulse_sim_dcinside --scenario PATH [--history-hours H] ...`

A local gallery site speaking DCInside's structure, bound to 127.0.0.1. Test controls under /sim/.

Nothing on the site is stamped after the wall clock: a seeded community whose initial posts would end in the future
(a late `--start`, many initial posts) is moved back so that its last post is now; live posts arrive in real time.
`--scenario default` (or a .toml path) fills the galleries with the community of the shared simulated world
(coinpulse_simworld), the same world sim-upbit serves with the same scenario: `--history-hours` of it first, then
live, and nothing of the random community (the initial and per-minute options are ignored there).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web
from coinpulse_common.settings import Settings

from coinpulse_sim_dcinside.app import Site
from coinpulse_sim_dcinside.community import KST, Community

if TYPE_CHECKING:
    from coinpulse_sim_dcinside.scenario import WorldCommunity


def _galleries(spec: str) -> list[tuple[str, str]]:
    out = []
    for part in spec.split(","):
        gid, _, kind = part.strip().partition(":")
        out.append((gid, kind or "normal"))
    return out


def build(args: argparse.Namespace) -> Site:
    galleries = _galleries(args.galleries)
    start = datetime.fromisoformat(args.start) if args.start else None
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=KST)
    if start is not None and start > datetime.now(KST):
        raise SystemExit(f"--start {args.start} is in the future: nothing on the site may be stamped after now")
    c = Community(galleries, seed=args.seed, start=start)
    for gid, _ in galleries:
        c.advance(gid, posts=args.initial_posts, comments=args.initial_comments)
    c.settle()  # the initial posts end no later than now; from now on nothing is stamped after the wall clock
    return Site(c, comments_per_page=args.comments_per_page, throttle_rps=args.throttle_rps if args.throttle else None,
                posts_per_minute=args.posts_per_minute, comments_per_minute=args.comments_per_minute)


def build_scenario(args: argparse.Namespace) -> tuple[Site, WorldCommunity]:
    # imported here: the other modes run without the simworld package
    from coinpulse_simworld import ScenarioError, World, load_scenario

    from coinpulse_sim_dcinside.scenario import WorldCommunity

    try:
        world = World(load_scenario(args.scenario))
    except ScenarioError as e:
        raise SystemExit(f"--scenario: {e}") from None
    galleries = _galleries(args.galleries)
    wc = WorldCommunity(world, Community(galleries, seed=world.scenario.seed), history_hours=args.history_hours)
    wc.fill()
    site = Site(wc.c, comments_per_page=args.comments_per_page,
                throttle_rps=args.throttle_rps if args.throttle else None)
    return site, wc


async def follow(wc: WorldCommunity, every_s: float = 1.0) -> None:
    """Add the world's documents as their time comes."""
    while True:
        await asyncio.sleep(every_s)
        wc.fill()


def main(argv: list[str] | None = None) -> int:
    s = Settings()
    ap = argparse.ArgumentParser(prog="coinpulse_sim_dcinside", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default=s.host)
    ap.add_argument("--port", type=int, default=s.sim_dcinside_port)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--galleries", default="bitcoins_new1:normal,coin:minor", help="id:kind,...")
    ap.add_argument("--start", default=None, help="virtual clock start, ISO (KST if no offset), not in the future; "
                                                  "default now")
    ap.add_argument("--initial-posts", type=int, default=120)
    ap.add_argument("--initial-comments", type=int, default=300)
    ap.add_argument("--posts-per-minute", type=float, default=4.0)
    ap.add_argument("--comments-per-minute", type=float, default=12.0)
    ap.add_argument("--comments-per-page", type=int, default=100)
    ap.add_argument("--throttle", action="store_true", help="answer 429 to requests closer than 1/--throttle-rps")
    ap.add_argument("--throttle-rps", type=float, default=1.0)
    ap.add_argument("--scenario", metavar="PATH",
                    help="the community of the shared simulated world of this scenario ('default' = the shipped one)")
    ap.add_argument("--history-hours", type=float, default=0.0,
                    help="scenario: hours of the world's past posts and comments on the site at start")
    args = ap.parse_args(argv)
    if args.history_hours < 0 or (args.history_hours and not args.scenario):
        raise SystemExit("--history-hours needs --scenario and must be >= 0")
    if args.scenario:
        site, wc = build_scenario(args)
        app = site.app()

        async def follow_ctx(app: web.Application):
            task = asyncio.create_task(follow(wc))
            yield
            task.cancel()

        app.cleanup_ctx.append(follow_ctx)
        source = f"scenario {args.scenario} ({wc.counts['posts']} posts, {wc.counts['comments']} comments)"
    else:
        site = build(args)
        app = site.app()
        source = f"seed {args.seed}"
    print(f"coinpulse sim dcinside on http://{args.host}:{args.port} ({source})", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
