"""The PostgreSQL model of revision 0001: silver and gold tables, partitioned by day on event time.

Connector-fed tables have exactly the columns the Debezium JDBC sink writes: one per Avro field, same name, with
Debezium's PostgreSQL mapping (string -> text, long -> bigint, int -> integer, double -> double precision,
boolean -> boolean, timestamp-millis (Connect Timestamp) -> timestamptz, array<string> -> text[]). Primary keys are
the record identity plus the partition column (PostgreSQL requires the partition key in every unique index); the
connectors use `primary.key.mode=record_value` with exactly these fields, so a replay or a revised candle upserts
the same row. Later changes go into new Alembic revisions; this module stays as revision 0001 created it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TEXT, BIGINT, INT, DOUBLE, BOOL, TS, TEXT_ARRAY = (
    "text", "bigint", "integer", "double precision", "boolean", "timestamptz", "text[]")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    schema: str  # bronze | silver | gold (base name; a namespace may prefix it)
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    partition_by: str | None = None  # timestamptz column, daily range partitions
    indexes: tuple[tuple[str, ...], ...] = ()
    avro: str | None = None  # schemas/<avro>.avsc when a connector writes it
    topics: tuple[str, ...] = field(default=())


def _c(name: str, type_: str, nullable: bool = False) -> Column:
    return Column(name, type_, nullable)


TRADES = Table("silver", "trades", (
    _c("market", TEXT), _c("sequential_id", BIGINT), _c("trade_timestamp", TS), _c("price", DOUBLE),
    _c("volume", DOUBLE), _c("ask_bid", TEXT), _c("prev_closing_price", DOUBLE, True), _c("change", TEXT, True),
    _c("change_price", DOUBLE, True), _c("stream_type", TEXT), _c("backfilled", BOOL), _c("received_at", TS),
), ("market", "sequential_id", "trade_timestamp"), "trade_timestamp", (("market", "trade_timestamp"),),
    "trade", ("upbit.trade",))

TICKERS = Table("silver", "tickers", (
    _c("market", TEXT), _c("timestamp", TS), _c("trade_price", DOUBLE), _c("opening_price", DOUBLE, True),
    _c("high_price", DOUBLE, True), _c("low_price", DOUBLE, True), _c("prev_closing_price", DOUBLE, True),
    _c("change", TEXT, True), _c("signed_change_rate", DOUBLE, True), _c("trade_volume", DOUBLE, True),
    _c("acc_trade_volume_24h", DOUBLE, True), _c("acc_trade_price_24h", DOUBLE, True),
    _c("trade_timestamp", BIGINT, True), _c("stream_type", TEXT), _c("received_at", TS),
), ("market", "timestamp"), "timestamp", (), "ticker", ("upbit.ticker",))

POSTS = Table("silver", "posts", (
    _c("gallery", TEXT), _c("post_no", BIGINT), _c("title", TEXT), _c("body", TEXT, True), _c("head", TEXT, True),
    _c("author_hash", TEXT), _c("ip_hash", TEXT, True), _c("is_member", BOOL), _c("created_at", TS),
    _c("views", INT), _c("recommend", INT), _c("reply_count", INT), _c("deleted", BOOL), _c("url", TEXT, True),
    _c("fetched_at", TS), _c("images", TEXT_ARRAY, True),
), ("gallery", "post_no", "created_at"), "created_at", (("gallery", "created_at"),), "post", ("dc.post",))

COMMENTS = Table("silver", "comments", (
    _c("gallery", TEXT), _c("post_no", BIGINT), _c("comment_no", BIGINT), _c("parent_no", BIGINT, True),
    _c("author_hash", TEXT), _c("ip_hash", TEXT, True), _c("kind", TEXT), _c("text", TEXT), _c("created_at", TS),
    _c("deleted", BOOL), _c("fetched_at", TS),
), ("gallery", "post_no", "comment_no", "created_at"), "created_at",
    (("gallery", "created_at"), ("gallery", "post_no")), "comment", ("dc.comment",))

CANDLES = Table("gold", "candles", (
    _c("market", TEXT), _c("interval", TEXT), _c("bucket_start", TS), _c("open", DOUBLE), _c("high", DOUBLE),
    _c("low", DOUBLE), _c("close", DOUBLE), _c("volume", DOUBLE), _c("quote_volume", DOUBLE), _c("vwap", DOUBLE),
    _c("trade_count", BIGINT), _c("buy_volume", DOUBLE), _c("sell_volume", DOUBLE), _c("first_trade_at", TS),
    _c("last_trade_at", TS), _c("revision", INT), _c("emitted_at", TS),
), ("market", "interval", "bucket_start"), "bucket_start", (("market", "bucket_start"), ("interval", "bucket_start")),
    "candle", ("candle.1m", "candle.5m", "candle.1h"))

MENTIONS = Table("gold", "mentions_1m", (
    _c("market", TEXT), _c("bucket_start", TS), _c("mentions", BIGINT), _c("posts", BIGINT), _c("comments", BIGINT),
    _c("positive", BIGINT), _c("negative", BIGINT), _c("sentiment", DOUBLE), _c("revision", INT),
    _c("emitted_at", TS),
), ("market", "bucket_start"), "bucket_start", (), "mention", ("mention.1m",))

# bronze in PostgreSQL is the ledger of the bronze objects the S3 sink wrote (the frames themselves live in S3)
S3_OBJECTS = Table("bronze", "s3_objects", (
    _c("key", TEXT), _c("topic", TEXT), _c("partition", INT), _c("start_offset", BIGINT), _c("end_offset", BIGINT),
    _c("records", INT), _c("size_bytes", BIGINT), _c("dt", TEXT), _c("hour", INT), _c("written_at", TS),
), ("key",), None, (("topic", "partition", "start_offset"),))

CONNECTOR_TABLES = (TRADES, TICKERS, POSTS, COMMENTS, CANDLES, MENTIONS)
# the KPI marts are the gold refresh flow's own tables (flows/, schema COINPULSE_MART_SCHEMA), not the sink's
TABLES = (*CONNECTOR_TABLES, S3_OBJECTS)


def _q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def create_table_sql(t: Table, schema: str) -> list[str]:
    """DDL for one table in `schema` (the namespaced name of t.schema): parent, DEFAULT partition, indexes."""
    cols = ",\n  ".join(f"{_q(c.name)} {c.type}{'' if c.nullable else ' NOT NULL'}" for c in t.columns)
    pk = ", ".join(_q(c) for c in t.primary_key)
    fq = f"{_q(schema)}.{_q(t.name)}"
    part = f" PARTITION BY RANGE ({_q(t.partition_by)})" if t.partition_by else ""
    out = [f"CREATE TABLE {fq} (\n  {cols},\n  PRIMARY KEY ({pk})\n){part}"]
    if t.partition_by:
        # rows for a day without a partition land here; the partition job moves them out (never lost)
        out.append(f"CREATE TABLE {_q(schema)}.{_q(t.name + '_default')} PARTITION OF {fq} DEFAULT")
    for idx in t.indexes:
        name = f"{t.name}_{'_'.join(idx)}_idx"
        out.append(f"CREATE INDEX {_q(name)} ON {fq} ({', '.join(_q(c) for c in idx)})")
    return out
