"""Retry with exponential backoff: Scrapy's RetryMiddleware decides *whether*; this waits base·2ⁿ before retrying.

403 and 429 are not retried: they reach the spider, which stops the cycle and reports it (see spiders/gallery.py).
"""

from __future__ import annotations

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.task import deferLater


def backoff_s(retry_times: int, base_s: float, max_s: float) -> float:
    """Wait before retry number `retry_times + 1`: base, 2·base, 4·base, … capped at max."""
    return min(max_s, base_s * (2**retry_times))


class BackoffRetryMiddleware(RetryMiddleware):
    def __init__(self, settings):
        super().__init__(settings)
        self.base_s = settings.getfloat("COINPULSE_BACKOFF_BASE", 2.0)
        self.max_s = settings.getfloat("COINPULSE_BACKOFF_MAX", 60.0)

    async def _wait(self, request: Request) -> None:
        delay = backoff_s(request.meta.get("retry_times", 0), self.base_s, self.max_s)
        if delay > 0:
            from twisted.internet import reactor

            await maybe_deferred_to_future(deferLater(reactor, delay, lambda: None))

    async def process_response(self, request: Request, response: Response, spider=None):  # type: ignore[override]
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        retry = self._retry(request, f"HTTP {response.status}")
        if retry is None:
            return response
        await self._wait(request)
        return retry

    async def process_exception(self, request: Request, exception: Exception, spider=None):  # type: ignore[override]
        if not isinstance(exception, self.exceptions_to_retry) or request.meta.get("dont_retry", False):
            return None
        retry = self._retry(request, exception)
        if retry is None:
            return None
        await self._wait(request)
        return retry
