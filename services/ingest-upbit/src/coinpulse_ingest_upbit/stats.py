"""Counters of the ingest service (plain ints on the hot path) exported to Prometheus by a custom collector."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector


@dataclass
class Stats:
    frames: int = 0
    frame_bytes: int = 0
    trades: int = 0  # produced (unique) trades, live + backfill
    tickers: int = 0
    orderbooks: int = 0
    status_frames: int = 0
    error_frames: int = 0
    duplicates: int = 0
    backfilled: int = 0
    history_trades: int = 0  # of which produced by the start-up history (COINPULSE_INGEST_HISTORY_HOURS)
    backfill_requests: int = 0
    backfill_truncated: int = 0
    rest_throttled: int = 0
    reconnects: int = 0
    connections: int = 0
    dlq: int = 0
    overflow: int = 0
    delivery_errors: int = 0
    delivery_retries: int = 0
    future_trades: int = 0
    delivered: int = 0
    connected: bool = False
    started_at: float = field(default_factory=time.time)
    last_frame_at: float = 0.0
    # frame-receive → broker-ack latency of silver records, ms (bounded reservoir)
    lag_ms: list[float] = field(default_factory=list)
    lag_cap: int = 100_000
    _lag_i: int = 0
    queue_depth: int = 0  # refreshed by the sink

    def observe_lag(self, ms: float) -> None:
        if len(self.lag_ms) < self.lag_cap:
            self.lag_ms.append(ms)
        else:
            self.lag_ms[self._lag_i] = ms
            self._lag_i = (self._lag_i + 1) % self.lag_cap

    def lag_quantile(self, q: float) -> float | None:
        if not self.lag_ms:
            return None
        s = sorted(self.lag_ms)
        return s[min(len(s) - 1, int(q * len(s)))]

    def snapshot(self) -> dict[str, object]:
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in ("lag_ms", "lag_cap")}
        d["lag_p50_ms"] = self.lag_quantile(0.5)
        d["lag_p99_ms"] = self.lag_quantile(0.99)
        return d


_COUNTERS = {
    "frames": "WebSocket frames received",
    "frame_bytes": "WebSocket payload bytes received",
    "trades": "unique trades produced (live and backfill)",
    "tickers": "ticker records produced",
    "orderbooks": "order book records produced",
    "status_frames": "status frames received",
    "error_frames": "error frames received from the server",
    "duplicates": "duplicate trades dropped",
    "backfilled": "trades produced from gap backfill",
    "history_trades": "trades produced by the start-up history, oldest first, before the first subscription",
    "backfill_requests": "REST /v1/trades/ticks requests",
    "backfill_truncated": "backfills that stopped at the page limit",
    "rest_throttled": "REST replies 429/418",
    "reconnects": "WebSocket reconnects",
    "dlq": "records sent to the dead-letter topic",
    "overflow": "records refused because the producer buffer was full",
    "delivery_errors": "records Kafka failed to accept",
    "delivery_retries": "records sent again after a failed delivery",
    "future_trades": "trades dead-lettered for a timestamp too far ahead of the wall clock",
    "delivered": "records acknowledged by Kafka",
}


class StatsCollector(Collector):
    def __init__(self, stats: Stats):
        self.stats = stats

    def collect(self):
        s = self.stats
        for name, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"coinpulse_ingest_upbit_{name}", doc, value=getattr(s, name))
        yield GaugeMetricFamily("coinpulse_ingest_upbit_connected", "1 when the WebSocket is open",
                                value=1.0 if s.connected else 0.0)
        yield GaugeMetricFamily("coinpulse_ingest_upbit_queue_depth", "records waiting in the producer",
                                value=s.queue_depth)
        lags = list(s.lag_ms)
        summ = SummaryMetricFamily("coinpulse_ingest_upbit_e2e_lag_ms",
                                   "frame receive to Kafka ack, ms (recent reservoir)",
                                   count_value=len(lags), sum_value=sum(lags))
        yield summ
        for q in (0.5, 0.99):
            v = s.lag_quantile(q)
            yield GaugeMetricFamily(f"coinpulse_ingest_upbit_e2e_lag_p{int(q * 100)}_ms",
                                    f"frame receive to Kafka ack, ms, quantile {q}", value=v if v is not None else 0.0)
