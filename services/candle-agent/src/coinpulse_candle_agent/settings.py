"""candle-agent settings: `COINPULSE_CANDLE_*` on top of the shared `Settings`."""

from __future__ import annotations

from coinpulse_common import topics
from coinpulse_common.kafka import DEFAULT_DELIVERY_TIMEOUT_S, DeliveryTimeoutS
from coinpulse_common.settings import Settings, env_name
from pydantic import Field, field_validator


class CandleSettings(Settings):
    candle_app_id: str = Field("coinpulse-candle-agent", description="Faust app id (consumer group, state topics)")
    candle_grace_ms: int = Field(5_000, description="event-time wait after a minute ends before its candle is emitted")
    candle_lateness_ms: int = Field(
        600_000, description="how long after its end a candle still accepts late trades (revision + 1)"
    )
    candle_mention_grace_ms: int = Field(30_000, description="grace of the mention.1m buckets")
    candle_mention_lateness_ms: int = Field(
        3 * 3_600_000, description="allowed lateness of mention buckets (comments on older posts arrive late)"
    )
    candle_idle_after_ms: int = Field(
        2_000, description="wall time without input (and no lag) after which the timer advances event time"
    )
    candle_timer_interval_s: float = Field(1.0, description="idle timer period")
    candle_batch_size: int = Field(2_000, description="events per processing batch (state is flushed per batch)",
        validation_alias=env_name("COINPULSE_CANDLE_BATCH_EVENTS", old="COINPULSE_CANDLE_BATCH_SIZE"))
    candle_batch_within_s: float = Field(0.1, description="longest wait to fill a batch")
    candle_metrics_port: int = Field(28103, description="Faust web server port (serves /health and /metrics), bound to host")
    candle_store: str = Field("memory://", description="Faust table store; state is rebuilt from the changelog")
    candle_trade_topic: str = Field(topics.UPBIT_TRADE, description="input trades")
    candle_post_topic: str = Field(topics.DC_POST, description="input posts")
    candle_comment_topic: str = Field(topics.DC_COMMENT, description="input comments")
    candle_out_1m: str = Field(topics.CANDLE_1M, description="1-minute candle output topic")
    candle_out_5m: str = Field(topics.CANDLE_5M, description="5-minute candle output topic")
    candle_out_1h: str = Field(topics.CANDLE_1H, description="1-hour candle output topic")
    candle_out_mention: str = Field(topics.MENTION_1M, description="mention output topic")
    candle_late_topic: str = Field(topics.CANDLE_LATE, description="trades later than the allowed lateness")
    candle_dlq_topic: str = Field(topics.dlq("candle-agent"), description="dead letters")
    candle_session_timeout_s: float = Field(
        30.0, description="consumer group session timeout: how long a killed worker's partitions stay assigned"
    )
    candle_uvloop: bool = Field(True, description="run the worker on uvloop (faust-streaming[uvloop])")
    candle_mentions: bool = Field(True, description="run the mention agents")
    candle_mention_partitions: int = Field(3, description="partitions of the internal market-keyed hits topic")
    candle_max_future_skew_s: float = Field(
        300.0, description="a trade or document whose event time is more than this far ahead of the wall clock is "
        "dead-lettered (future_timestamp) instead of dragging event time forward"
    )
    candle_delivery_timeout_s: DeliveryTimeoutS = Field(
        DEFAULT_DELIVERY_TIMEOUT_S, description="how long the producer keeps retrying an output or state record "
        "while Kafka is unreachable (Faust's producer_request_timeout); when a record still fails, the worker exits "
        "at once, before any later commit, and its restart re-reads from the last commit: nothing is lost"
    )

    @field_validator("candle_max_future_skew_s")
    @classmethod
    def _skew_positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"COINPULSE_CANDLE_MAX_FUTURE_SKEW_S must be > 0 seconds (got {v}): it is how far ahead "
                             "of the wall clock an event time may be before the record is dead-lettered")
        return v

    def candle_topics(self) -> dict[str, str]:
        return {"1m": self.candle_out_1m, "5m": self.candle_out_5m, "1h": self.candle_out_1h}
