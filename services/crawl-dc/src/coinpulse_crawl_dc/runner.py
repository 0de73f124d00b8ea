"""Unattended cycles: one reactor, one CrawlerProcess, galleries crawled one after another, a cycle every
`dc_interval` seconds measured start to start. The next cycle starts only after the previous one returned, so
cycles never overlap; a cycle longer than the interval is followed immediately by the next."""

from __future__ import annotations

import time
from typing import Any

from coinpulse_common.logging import configure, get_logger
from scrapy.crawler import CrawlerProcess
from twisted.internet import defer
from twisted.internet.task import deferLater

from coinpulse_crawl_dc import metrics
from coinpulse_crawl_dc.config import CrawlSettings
from coinpulse_crawl_dc.crawler_settings import scrapy_settings
from coinpulse_crawl_dc.gallery import parse_galleries
from coinpulse_crawl_dc.sink import KafkaSink
from coinpulse_crawl_dc.spiders.gallery import GallerySpider
from coinpulse_crawl_dc.state import StateStore

log = get_logger("coinpulse.crawl_dc")


def run(cfg: CrawlSettings, *, once: bool = False, cycles: int | None = None) -> int:
    configure()
    cfg.check()
    if cfg.hash_key_is_dev():
        log.warning("dev_hash_key", msg="COINPULSE_DC_HASH_KEY not set: pseudonyms use the built-in dev key")
    galleries = parse_galleries(cfg.dc_galleries)
    store = StateStore(cfg.state_file())
    metrics.serve(cfg.crawl_metrics_port, cfg.host, [g.id for g in galleries], cfg.dc_interval)
    sinks = {g.id: KafkaSink(cfg, g.id) for g in galleries}
    process = CrawlerProcess(scrapy_settings(cfg), install_root_handler=True)
    from twisted.internet import reactor  # installed by CrawlerProcess (asyncio reactor)

    limit = 1 if once else cycles
    result: dict[str, Any] = {"cycles": 0}

    @defer.inlineCallbacks
    def loop():
        try:
            while limit is None or result["cycles"] < limit:
                t0 = time.monotonic()
                for g in galleries:
                    yield process.crawl(GallerySpider, gallery=g, cfg=cfg, store=store, sink=sinks[g.id])
                result["cycles"] += 1
                if limit is not None and result["cycles"] >= limit:
                    break
                wait = max(0.0, cfg.dc_interval - (time.monotonic() - t0))
                log.info("cycle_sleep", seconds=round(wait, 1))
                yield deferLater(reactor, wait, lambda: None)
        except Exception as e:
            log.exception("loop_failed", error=str(e))
            result["error"] = str(e)
        finally:
            if reactor.running:
                reactor.stop()

    reactor.callWhenRunning(loop)
    process.start(stop_after_crawl=False)
    store.close()
    for s in sinks.values():
        s.producer.flush(10)
    log.info("crawler_stopped", cycles=result["cycles"])
    return 1 if "error" in result else 0
