"""`python -m coinpulse_crawl_dc [--once | --cycles N]` — crawl the configured galleries every COINPULSE_DC_INTERVAL_S s."""

from __future__ import annotations

import argparse
import sys

from coinpulse_crawl_dc.config import CrawlSettings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="coinpulse_crawl_dc", description=__doc__)
    ap.add_argument("--once", action="store_true", help="run one cycle of every gallery, then exit")
    ap.add_argument("--cycles", type=int, default=None, help="run this many cycles, then exit")
    args = ap.parse_args(argv)
    # Scrapy's asyncio reactor must be installed before any module imports the default one
    from scrapy.utils.reactor import install_reactor

    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from coinpulse_crawl_dc.runner import run

    cfg = CrawlSettings()
    try:
        cfg.check()
    except ValueError as e:  # a setting that must not be used here: say which, and what to do
        print(f"crawl-dc: {e}", file=sys.stderr)
        return 2
    return run(cfg, once=args.once, cycles=args.cycles)


if __name__ == "__main__":
    sys.exit(main())
