"""Item pipeline: every record into the gallery's Kafka transaction; at the end of the cycle the crawl-run report,
the commit, and only then the state (watermark, reply counts, comment numbers) in SQLite."""

from __future__ import annotations

import time
from typing import Any

from coinpulse_common.topics import DC_CRAWL_RUN
from scrapy import signals

from coinpulse_crawl_dc import metrics
from coinpulse_crawl_dc.records import JobDone, Record
from coinpulse_crawl_dc.state import StateDelta


class KafkaPipeline:
    def __init__(self, crawler: Any):
        self.crawler = crawler
        self.delta = StateDelta()
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> KafkaPipeline:
        return cls(crawler)

    def open_spider(self) -> None:
        self.crawler.spider.sink.begin()

    def process_item(self, item: Any) -> Any:
        spider = self.crawler.spider
        if isinstance(item, Record):
            try:
                spider.sink.send(item.base_topic, item.key, item.value)
            except Exception as e:  # noqa: BLE001 - a record that does not fit its schema: dead-letter it, keep crawling
                spider.report.errors += 1
                spider.report.dead_letters += 1
                metrics.ERRORS.labels(spider.gallery.id, "encode").inc()
                metrics.DEAD_LETTERS.labels(spider.gallery.id).inc()
                spider.log.error("record_rejected", topic=item.base_topic, key=item.key, error=str(e)[:300])
                spider.sink.dead_letter(
                    f"encode {item.base_topic}: {e}", repr(item.value)[:100_000], source=item.base_topic, key=item.key
                )
        elif isinstance(item, JobDone):
            self.delta.merge(item.delta)
        return item

    def spider_closed(self, spider: Any, reason: str) -> None:
        rep = spider.report
        g = spider.gallery.id
        stats = self.crawler.stats
        rep.requests = int(stats.get_value("downloader/request_count", 0) or 0)
        if rep.status == "ok" and reason not in ("finished",):
            rep.status, rep.reason = "interrupted", rep.reason or reason
        if rep.status == "ok" and rep.dead_letters:  # finished, but not everything it read made it to silver
            rep.status = "degraded"
            rep.reason = (f"{rep.dead_letters} dead letters in dlq.crawl-dc ({rep.alarms} parse alarms, "
                          f"{rep.skipped_posts} posts given up"
                          + (f", {rep.given_up_requests} of them after failed requests" if rep.given_up_requests
                             else "") + ")")
        self.delta.watermark = spider.final_watermark()
        finished = int(time.time() * 1000)
        run = {
            "run_id": rep.run_id,
            "gallery": g,
            "started_at": rep.started_ms,
            "finished_at": finished,
            "status": rep.status,
            "reason": rep.reason,
            "new_posts": rep.new_posts,
            "new_comments": rep.new_comments,
            "updated_posts": rep.updated_posts,
            "deleted_posts": rep.deleted_posts,
            "requests": rep.requests,
            "errors": rep.errors,
            "dead_letters": rep.dead_letters,
            "skipped_posts": rep.skipped_posts,
        }
        try:
            spider.sink.send(DC_CRAWL_RUN, g, run)
            spider.sink.commit()
        except Exception as e:  # noqa: BLE001 - any commit failure fails the cycle with its reason, the crawler goes on
            rep.status, rep.reason = "failed", f"kafka commit failed: {e}"[:500]
            metrics.ERRORS.labels(g, "kafka").inc()
            metrics.CYCLES.labels(g, "failed").inc()
            spider.log.error("cycle_failed", reason=rep.reason)
            return
        spider.store.apply(g, self.delta, finished, spider.cfg.dc_keep_posts)
        metrics.REQUESTS.labels(g).inc(rep.requests)
        metrics.CYCLES.labels(g, rep.status).inc()
        metrics.CYCLE_SECONDS.labels(g).observe((finished - rep.started_ms) / 1000)
        metrics.LAST_SUCCESS.labels(g).set(finished / 1000)
        wm = spider.store.watermark(g)
        if wm is not None:
            metrics.WATERMARK.labels(g).set(wm)
        spider.log.info(
            "cycle_done", status=rep.status, reason=rep.reason, new_posts=rep.new_posts,
            new_comments=rep.new_comments, updated_posts=rep.updated_posts, deleted_posts=rep.deleted_posts,
            requests=rep.requests, errors=rep.errors, alarms=rep.alarms, dead_letters=rep.dead_letters,
            skipped_posts=rep.skipped_posts, pages=rep.pages_listed,
            duration_s=round((finished - rep.started_ms) / 1000, 3), watermark=wm,
        )
