"""The Quix Streams peer for bench/candle_agent.py: the same 1-minute candles with a tumbling window and .final().

Runs in its own venv (.coinpulse/bench-venvs/quixstreams), never in the workspace:
    python bench/_quix_candles.py --broker B --registry URL --input T --output T --group G --grace-ms 5000

Input: Avro `upbit.trade` values (Confluent wire format, via the registry). Output: JSON candles keyed by market.
Dedupe by sequential_id inside the window, open/close by (trade_timestamp, sequential_id), windows closed per
partition (closing_strategy="partition": the partition's event time, as coinpulse does).
"""

from __future__ import annotations

import argparse
from datetime import datetime

from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer
from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig


def ts_ms(v) -> int:
    return int(round(v.timestamp() * 1000)) if isinstance(v, datetime) else int(v)


def init(t: dict) -> dict:
    ts, seq, p, v = ts_ms(t["trade_timestamp"]), t["sequential_id"], t["price"], t["volume"]
    bid = t["ask_bid"] == "BID"
    return {"seqs": [seq], "o": p, "h": p, "l": p, "c": p, "v": v, "q": p * v, "n": 1,
            "b": v if bid else 0.0, "s": 0.0 if bid else v, "f": [ts, seq], "z": [ts, seq]}


def reduce(a: dict, t: dict) -> dict:
    seq = t["sequential_id"]
    if seq in a["seqs"]:
        return a
    a["seqs"].append(seq)
    ts, p, v = ts_ms(t["trade_timestamp"]), t["price"], t["volume"]
    key = [ts, seq]
    a["h"] = max(a["h"], p)
    a["l"] = min(a["l"], p)
    if key < a["f"]:
        a["f"], a["o"] = key, p
    if key > a["z"]:
        a["z"], a["c"] = key, p
    a["v"] += v
    a["q"] += p * v
    a["n"] += 1
    if t["ask_bid"] == "BID":
        a["b"] += v
    else:
        a["s"] += v
    return a


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("broker", "registry", "input", "output", "group", "state-dir"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--grace-ms", type=int, default=5000)
    a = ap.parse_args()
    app = Application(broker_address=a.broker, consumer_group=a.group, auto_offset_reset="earliest",
                      state_dir=a.state_dir, processing_guarantee="at-least-once")
    deser = AvroDeserializer(schema_registry_client_config=SchemaRegistryClientConfig(url=a.registry))
    src = app.topic(a.input, value_deserializer=deser,
                    timestamp_extractor=lambda value, headers, ts, ts_type: ts_ms(value["trade_timestamp"]))
    out = app.topic(a.output, value_serializer="json", key_serializer="bytes")
    sdf = app.dataframe(src)
    sdf = sdf.tumbling_window(duration_ms=60_000, grace_ms=a.grace_ms).reduce(reduce, init).final(
        closing_strategy="partition")

    def candle(w: dict, key, timestamp, headers) -> dict:
        x = w["value"]
        return {"market": key.decode() if isinstance(key, bytes) else key, "interval": "1m",
                "bucket_start": w["start"], "open": x["o"], "high": x["h"], "low": x["l"], "close": x["c"],
                "volume": x["v"], "quote_volume": x["q"], "vwap": x["q"] / x["v"], "trade_count": x["n"],
                "buy_volume": x["b"], "sell_volume": x["s"], "first_trade_at": x["f"][0],
                "last_trade_at": x["z"][0]}

    sdf = sdf.apply(candle, metadata=True)
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
