"""`python -m coinpulse_sim_dcinside [--port N] [--seed S] [--throttle] [--posts-per-minute R] ...`

A local gallery site speaking DCInside's structure, bound to 127.0.0.1. Test controls under /sim/.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from aiohttp import web
from coinpulse_common.settings import Settings

from coinpulse_sim_dcinside.app import Site
from coinpulse_sim_dcinside.community import KST, Community


def build(args: argparse.Namespace) -> Site:
    galleries = []
    for part in args.galleries.split(","):
        gid, _, kind = part.strip().partition(":")
        galleries.append((gid, kind or "normal"))
    start = datetime.fromisoformat(args.start) if args.start else None
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=KST)
    c = Community(galleries, seed=args.seed, start=start)
    for gid, _ in galleries:
        c.advance(gid, posts=args.initial_posts, comments=args.initial_comments)
    return Site(c, comments_per_page=args.comments_per_page, throttle_rps=args.throttle_rps if args.throttle else None,
                posts_per_minute=args.posts_per_minute, comments_per_minute=args.comments_per_minute)


def main(argv: list[str] | None = None) -> int:
    s = Settings()
    ap = argparse.ArgumentParser(prog="coinpulse_sim_dcinside", description=__doc__)
    ap.add_argument("--host", default=s.host)
    ap.add_argument("--port", type=int, default=s.sim_dcinside_port)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--galleries", default="bitcoins_new1:normal,coin:minor", help="id:kind,...")
    ap.add_argument("--start", default=None, help="virtual clock start, ISO (KST if no offset); default now")
    ap.add_argument("--initial-posts", type=int, default=120)
    ap.add_argument("--initial-comments", type=int, default=300)
    ap.add_argument("--posts-per-minute", type=float, default=4.0)
    ap.add_argument("--comments-per-minute", type=float, default=12.0)
    ap.add_argument("--comments-per-page", type=int, default=100)
    ap.add_argument("--throttle", action="store_true", help="answer 429 to requests closer than 1/--throttle-rps")
    ap.add_argument("--throttle-rps", type=float, default=1.0)
    args = ap.parse_args(argv)
    site = build(args)
    print(f"coinpulse sim dcinside on http://{args.host}:{args.port} (seed {args.seed})", flush=True)
    web.run_app(site.app(), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
