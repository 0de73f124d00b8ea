"""Pure logic: partition bounds, due rules, object layout, the batch-independent digest, bronze trade parsing."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from coinpulse_flows import export, layout
from coinpulse_flows.digest import digest_batches, digest_parquet
from coinpulse_flows.partitions import Partition, due, parse_day_bound
from coinpulse_flows.storage import Manifest
from coinpulse_upbit.bronze import received_ms, trades_of_frame

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("bound,expected", [
    ("FOR VALUES FROM ('2024-05-01 00:00:00+00') TO ('2024-05-02 00:00:00+00')", date(2024, 5, 1)),
    ("FOR VALUES FROM ('2024-05-01') TO ('2024-05-02')", date(2024, 5, 1)),
    ("FOR VALUES FROM ('2024-05-01 09:00:00+09') TO ('2024-05-02 09:00:00+09')", date(2024, 5, 1)),
    ("FOR VALUES FROM ('2024-12-31 00:00:00') TO ('2025-01-01 00:00:00')", date(2024, 12, 31)),
])
def test_day_bounds_parse_to_their_utc_day(bound, expected):
    assert parse_day_bound(bound) == expected


@pytest.mark.parametrize("bound", [
    None, "DEFAULT", "FOR VALUES FROM ('2024-05-01') TO ('2024-05-08')",
    "FOR VALUES FROM ('2024-05-01 06:00:00+00') TO ('2024-05-02 06:00:00+00')",
    "FOR VALUES IN ('KRW-BTC')", "FOR VALUES FROM (MINVALUE) TO ('2024-05-02')",
    "FOR VALUES FROM ('KRW-A', '2024-05-01') TO ('KRW-B', '2024-05-02')",
])
def test_other_bounds_are_not_day_partitions(bound):
    assert parse_day_bound(bound) is None


def test_only_partitions_strictly_older_than_the_limit_are_due_oldest_first():
    today = date(2024, 6, 30)
    parts = [Partition("s", "t", "s", f"t_{d}", date(2024, 6, 30 - d)) for d in (14, 15, 3, 29)]
    assert [p.age_days(today) for p in due(parts, today, 14)] == [29, 15]


def test_layout_keys_round_trip():
    key = layout.tier_key("silver.trades", date(2024, 5, 1))
    assert key == "silver.trades/date=2024-05-01/part-0.parquet"
    assert layout.day_of_key(key) == date(2024, 5, 1)
    assert layout.table_of_key(key) == "silver.trades"
    assert layout.table_of_key("x/" + key, "x/") == "silver.trades"
    assert layout.day_of_key("bronze/upbit.raw/date=2024-13-01/a.jsonl") is None
    assert layout.table_of_key("backups/pg/x.dump") is None


def _table(n: int) -> pa.Table:
    return pa.table({"market": [f"KRW-{i % 7}" for i in range(n)], "seq": list(range(n)),
                     "price": [i * 0.5 if i % 11 else None for i in range(n)]})


def test_digest_does_not_depend_on_batch_boundaries_or_order():
    t = _table(1000)
    a = digest_batches(t.to_batches(max_chunksize=1000))
    b = digest_batches(t.to_batches(max_chunksize=37))
    c = digest_batches(t.take(list(reversed(range(1000)))).to_batches(max_chunksize=100))
    assert (a.rows, a.hex) == (b.rows, b.hex) == (c.rows, c.hex) == (1000, a.hex)


def test_digest_changes_when_one_value_changes():
    t = _table(500)
    changed = t.set_column(1, "seq", pa.array([i if i != 250 else 9999 for i in range(500)]))
    assert digest_batches(t.to_batches()).hex != digest_batches(changed.to_batches()).hex


def _typed_table(n: int) -> pa.Table:
    """Every Arrow type ADBC's PostgreSQL driver exports (numeric arrives as opaque text, json(b) as arrow.json)."""
    ts = [datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=i * 1.5) for i in range(n)]
    return pa.table({
        "i2": pa.array([i % 300 for i in range(n)], pa.int16()), "i4": pa.array(range(n), pa.int32()),
        "i8": pa.array([i * 7 if i % 9 else None for i in range(n)], pa.int64()),
        "f4": pa.array([i / 3 for i in range(n)], pa.float32()), "f8": pa.array([i * 0.1 for i in range(n)]),
        "num": pa.ExtensionArray.from_storage(pa.opaque(pa.string(), "numeric", "PostgreSQL"),
                                              pa.array([f"{i}.125" for i in range(n)])),
        "txt": pa.array([f"KRW-{i % 7}" if i % 5 else None for i in range(n)]), "ko": [f"비트{i}" for i in range(n)],
        "b": [i % 2 == 0 for i in range(n)], "tz": pa.array(ts, pa.timestamp("us", "UTC")),
        "ts": pa.array([t.replace(tzinfo=None) for t in ts], pa.timestamp("us")),
        "d": pa.array([t.date() for t in ts], pa.date32()), "t": pa.array([t.time() for t in ts], pa.time64("us")),
        "js": pa.ExtensionArray.from_storage(pa.json_(), pa.array([f'{{"a": {i}}}' for i in range(n)])),
        "bin": pa.array([i.to_bytes(4, "big") for i in range(n)], pa.binary()),
        "id": pa.ExtensionArray.from_storage(pa.uuid(), pa.array([i.to_bytes(16, "big") for i in range(n)],
                                                                 pa.binary(16))),
    })


def test_parquet_read_back_has_the_digest_of_what_was_written_for_every_exported_type(tmp_path):
    t = _typed_table(5000)
    path = tmp_path / "x.parquet"
    with pq.ParquetWriter(path, t.schema, **export.parquet_options(t.schema)) as w:
        for b in t.to_batches(max_chunksize=700):
            w.write_batch(b)
    back = digest_parquet(path)
    assert (back.rows, back.hex) == (5000, digest_batches(t.to_batches()).hex)
    for col in t.column_names:  # and column by column, so no type is hidden behind another's hash
        one = t.select([col])
        pq.write_table(one, tmp_path / f"{col}.parquet", **export.parquet_options(one.schema))
        assert digest_parquet(tmp_path / f"{col}.parquet").hex == digest_batches(one.to_batches()).hex, col


def test_parquet_options_pick_encodings_by_type():
    o = export.parquet_options(_typed_table(10).schema)
    assert set(o["use_dictionary"]) == {"num", "txt", "ko", "js", "bin"}
    assert o["column_encoding"]["i8"] == o["column_encoding"]["tz"] == o["column_encoding"]["d"] == "DELTA_BINARY_PACKED"
    assert o["column_encoding"]["f8"] == "BYTE_STREAM_SPLIT" and "b" not in o["column_encoding"]


def test_manifest_round_trips_through_object_metadata():
    m = Manifest(12, "00ff", "ab" * 32, "silver.trades_20240501")
    assert Manifest.from_meta(m.to_meta()) == m
    assert Manifest.from_meta({"rows": "x"}) is None


def _raw(payload, received_at=1_700_000_000_000):
    return {"payload": json.dumps(payload) if not isinstance(payload, str) else payload, "received_at": received_at}


def test_trade_frames_in_default_and_simple_names_parse_the_same():
    default = {"type": "trade", "code": "KRW-BTC", "trade_price": 100.0, "trade_volume": 0.5, "ask_bid": "BID",
               "trade_timestamp": 1_700_000_000_123, "sequential_id": 42, "stream_type": "REALTIME"}
    simple = {"ty": "trade", "cd": "KRW-BTC", "tp": 100.0, "tv": 0.5, "ab": "BID", "ttms": 1_700_000_000_123,
              "sid": 42, "st": "REALTIME"}
    stats = Counter()
    a, b = trades_of_frame(_raw(default), stats), trades_of_frame(_raw([simple]), stats)
    assert a == b and a[0]["sequential_id"] == 42 and not stats
    assert a[0]["backfilled"] is False  # a live WebSocket trade, as the ingester wrote it


def test_bad_frames_are_counted_by_reason_not_raised():
    stats = Counter()
    out = trades_of_frame(_raw("{not json"), stats)
    out += trades_of_frame(_raw([{"type": "ticker", "code": "KRW-BTC"}, 3,
                                 {"type": "trade", "code": "KRW-BTC", "ask_bid": "BID", "trade_price": "x"}]), stats)
    assert out == [] and stats == Counter(bad_json=1, not_a_trade=1, not_an_object=1, bad_trade=1)


def test_received_at_accepts_datetimes_and_epoch_ms():
    from datetime import UTC, datetime
    assert received_ms(datetime(2024, 1, 1, tzinfo=UTC)) == received_ms(1_704_067_200_000) == 1_704_067_200_000


def test_default_tables_are_the_sink_models_tables_with_the_columns_the_flows_use():
    """The flows read what the sink writes: a default naming another table fails every run on a real stack."""
    from coinpulse_flows.backfill import TRADE_COLUMNS
    from coinpulse_flows.settings import FlowSettings
    from coinpulse_sink import model

    s = FlowSettings()
    for setting, table, used in (
        (s.trades_table, model.TRADES, set(TRADE_COLUMNS)),
        (s.candles_table, model.CANDLES, {"market", "interval", "bucket_start", "open", "high", "low", "close",
                                          "volume", "quote_volume", "trade_count", "buy_volume", "sell_volume",
                                          "first_trade_at", "last_trade_at"}),
        (s.mentions_table, model.MENTIONS, {"market", "bucket_start", "mentions", "sentiment"}),
    ):
        assert setting == f"{table.schema}.{table.name}"
        assert used <= {c.name for c in table.columns}, used - {c.name for c in table.columns}
    assert s.trades_table.split(".")[0] in s.tier_schemas and s.candles_table.split(".")[0] in s.tier_schemas
