"""ingest-upbit settings: `COINPULSE_INGEST_*` environment variables, on top of the shared Settings.

The variable of each field is its attribute with the `INGEST_` service prefix (see coinpulse_common.settings);
the former unprefixed names (`COINPULSE_MARKETS`, ...) are accepted, with a warning, until the next release.
"""

from __future__ import annotations

from coinpulse_common import topics
from coinpulse_common.kafka import DEFAULT_DELIVERY_TIMEOUT_S, DeliveryTimeoutS
from coinpulse_common.settings import Settings, env_name
from pydantic import Field, field_validator


class IngestSettings(Settings):
    upbit_ws_url: str = Field("wss://api.upbit.com/websocket/v1", description="Upbit WebSocket endpoint",
        validation_alias=env_name("COINPULSE_INGEST_UPBIT_WS_URL", old="COINPULSE_UPBIT_WS_URL"))
    upbit_rest_url: str = Field("https://api.upbit.com", description="Upbit REST base URL",
        validation_alias=env_name("COINPULSE_INGEST_UPBIT_REST_URL", old="COINPULSE_UPBIT_REST_URL"))
    markets: str = Field("", description="comma-separated market codes (KRW-BTC,KRW-ETH,...); empty: use top_n",
        validation_alias=env_name("COINPULSE_INGEST_MARKETS", old="COINPULSE_MARKETS"))
    top_n: int = Field(15, description="when `markets` is empty: subscribe the top N KRW markets by 24 h value",
        validation_alias=env_name("COINPULSE_INGEST_TOP_N", old="COINPULSE_TOP_N"))
    top_n_refresh_s: float = Field(86400.0, description="how often the top-N set is recomputed (a change resubscribes)",
        validation_alias=env_name("COINPULSE_INGEST_TOP_N_REFRESH_S", old="COINPULSE_TOP_N_REFRESH_S"))
    ingest_metrics_port: int = Field(28101, description="health (/health) and Prometheus (/metrics) port")
    ws_format: str = Field("DEFAULT", description="requested frame format: DEFAULT or SIMPLE (both always parsed)",
        validation_alias=env_name("COINPULSE_INGEST_WS_FORMAT", old="COINPULSE_WS_FORMAT"))
    orderbook_depth: int = Field(15, description="order book units requested per market (1, 5, 15 or 30)",
        validation_alias=env_name("COINPULSE_INGEST_ORDERBOOK_DEPTH", old="COINPULSE_ORDERBOOK_DEPTH"))
    keepalive_s: float = Field(60.0, description="send a PING when nothing was sent for this long (Upbit: 120 s idle rule)",
        validation_alias=env_name("COINPULSE_INGEST_KEEPALIVE_S", old="COINPULSE_KEEPALIVE_S"))
    reconnect_base_s: float = Field(0.5, description="first reconnect backoff; doubles per failure with jitter",
        validation_alias=env_name("COINPULSE_INGEST_RECONNECT_BASE_S", old="COINPULSE_RECONNECT_BASE_S"))
    reconnect_cap_s: float = Field(30.0, description="longest reconnect backoff",
        validation_alias=env_name("COINPULSE_INGEST_RECONNECT_CAP_S", old="COINPULSE_RECONNECT_CAP_S"))
    backfill_margin_s: float = Field(60.0, description="gap backfill pages this far behind a market's last trade time",
        validation_alias=env_name("COINPULSE_INGEST_BACKFILL_MARGIN_S", old="COINPULSE_BACKFILL_MARGIN_S"))
    backfill_initial_s: float = Field(300.0, description="for a market with no history: backfill this far back",
        validation_alias=env_name("COINPULSE_INGEST_BACKFILL_INITIAL_S", old="COINPULSE_BACKFILL_INITIAL_S"))
    backfill_max_pages: int = Field(200, description="most /v1/trades/ticks pages per market per backfill",
        validation_alias=env_name("COINPULSE_INGEST_BACKFILL_MAX_PAGES", old="COINPULSE_BACKFILL_MAX_PAGES"))
    ingest_history_hours: float = Field(
        0.0, description="before the first subscription, fetch this many hours of each market's past trades over "
        "REST and produce them oldest first (a market already in the trade topic: only since its last trade); "
        "0 = off, markets never seen get COINPULSE_INGEST_BACKFILL_INITIAL_S after the first connect"
    )
    ingest_history_max_pages: int = Field(
        1000, ge=1, description="most /v1/trades/ticks pages (500 trades) per market of that start-up history; it is held "
        "in memory until produced in trade-time order"
    )
    dedupe_capacity: int = Field(200_000, description="recent trade ids remembered per market",
        validation_alias=env_name("COINPULSE_INGEST_DEDUPE_CAPACITY_TRADES", old="COINPULSE_DEDUPE_CAPACITY"))
    seed_tail: int = Field(50_000, description="records read back from each trade-topic partition on start",
        validation_alias=env_name("COINPULSE_INGEST_SEED_TAIL_RECORDS", old="COINPULSE_SEED_TAIL"))
    buffer_max: int = Field(100_000, description="records held when the producer queue is full, before overflow",
        validation_alias=env_name("COINPULSE_INGEST_BUFFER_MAX_RECORDS", old="COINPULSE_BUFFER_MAX"))
    trade_topic: str = Field(topics.UPBIT_TRADE, description="silver trade topic",
        validation_alias=env_name("COINPULSE_INGEST_TRADE_TOPIC", old="COINPULSE_TRADE_TOPIC"))
    ticker_topic: str = Field(topics.UPBIT_TICKER, description="silver ticker topic",
        validation_alias=env_name("COINPULSE_INGEST_TICKER_TOPIC", old="COINPULSE_TICKER_TOPIC"))
    orderbook_topic: str = Field(topics.UPBIT_ORDERBOOK, description="silver order book topic",
        validation_alias=env_name("COINPULSE_INGEST_ORDERBOOK_TOPIC", old="COINPULSE_ORDERBOOK_TOPIC"))
    raw_topic: str = Field(topics.UPBIT_RAW, description="bronze frame topic",
        validation_alias=env_name("COINPULSE_INGEST_RAW_TOPIC", old="COINPULSE_RAW_TOPIC"))
    dlq_topic: str = Field(topics.dlq("ingest-upbit"), description="dead-letter topic",
        validation_alias=env_name("COINPULSE_INGEST_DLQ_TOPIC", old="COINPULSE_DLQ_TOPIC"))
    bronze: bool = Field(True, description="keep every frame in the bronze topic",
        validation_alias=env_name("COINPULSE_INGEST_BRONZE", old="COINPULSE_BRONZE"))
    ingest_delivery_timeout_s: DeliveryTimeoutS = Field(
        DEFAULT_DELIVERY_TIMEOUT_S, description="how long the producer keeps retrying a record while Kafka is unreachable "
        "(librdkafka message.timeout.ms); a record that still fails is sent again, never dropped"
    )
    ingest_max_future_skew_s: float = Field(
        300.0, description="a trade stamped more than this far ahead of the wall clock is dead-lettered "
        "(future_timestamp) instead of reaching the trade topic"
    )
    ingest_schema_wait_s: float = Field(
        30.0, description="how long start-up waits for each output topic's schema to be registered before failing"
    )

    @field_validator("ingest_history_hours")
    @classmethod
    def _history(cls, v: float) -> float:
        if not 0 <= v <= 24 * 7:
            raise ValueError(f"COINPULSE_INGEST_HISTORY_HOURS must be within [0, 168] (Upbit serves 7 days of trades); "
                             f"got {v}")
        return v

    @field_validator("ingest_max_future_skew_s", "ingest_schema_wait_s")
    @classmethod
    def _positive(cls, v: float, info) -> float:
        if not v > 0:
            raise ValueError(f"COINPULSE_{info.field_name.upper()} must be > 0 seconds; got {v}")
        return v

    def market_list(self) -> list[str]:
        from coinpulse_ingest_upbit.markets import parse_market_list

        return parse_market_list(self.markets)
