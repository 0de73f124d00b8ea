"""Upbit frames in bronze → silver trade records, by the live parser (`coinpulse_upbit.protocol`) itself.

Bronze `upbit.raw` values (schemas/raw_frame.avsc) carry the frame text in `payload`, as the ingester received it:

- `source` `upbit.ws`: one WebSocket message, a JSON object or a JSON array of them (LIST formats), in DEFAULT or
  SIMPLE names; the trades among them are parsed exactly as the ingester parsed them live
  (`protocol.parse_trade`, after `protocol.message_type`);
- `source` `upbit.rest`: a `/v1/trades/ticks` reply (the ingester's gap backfill), a JSON array; each element is
  parsed by `protocol.parse_rest_trade` (`stream_type` BACKFILL, `backfilled` true, as the ingester produced it).

The payload is decoded with the ingester's own decoder (`protocol.loads`, orjson), so even JSON edge cases (a NaN
literal, an integer beyond 64 bits) go the same way as live. Where the objects live in S3 and how a line reads is
`coinpulse_common.bronze`.

Anything that is not a well-formed trade is counted by reason in `stats`, never raised: `bad_json` (the payload is
not JSON), `bad_rest_reply` (a REST payload that is not an array), `empty_list`, `not_an_object` (an array element
that is not an object), `bad_type` (a `type`/`ty` that is not a string), `not_a_trade` (a ticker, an order book,
a status or error frame: the backfill only wants trades; they are not validated), `bad_trade` (a trade the live
parser refuses: the ingester dead-lettered it too). The caller reports them.

One difference cannot be undone: the ingester stores a frame that is not valid UTF-8 with replacement characters
(its dead letter keeps the bytes), so such a frame is read back as whatever the replaced text says.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from coinpulse_upbit import protocol as P

WS_SOURCE, REST_SOURCE = "upbit.ws", "upbit.rest"


def trades_of_frame(raw: dict[str, Any], stats: Counter[str]) -> list[dict[str, Any]]:
    """The trades in one bronze record (`source`, `payload`, `received_at`); problems are counted in `stats`."""
    try:
        obj = P.loads(raw["payload"])
    except (KeyError, TypeError, P.FrameError):
        stats["bad_json"] += 1
        return []
    received_at = received_ms(raw.get("received_at") or 0)
    rest = raw.get("source") == REST_SOURCE
    if rest and not isinstance(obj, list):
        stats["bad_rest_reply"] += 1
        return []
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        stats["empty_list"] += 1
        return []
    out = []
    for m in items:
        if not isinstance(m, dict):
            stats["not_an_object"] += 1
            continue
        if rest:
            try:
                out.append(P.parse_rest_trade(m, received_at))
            except P.FrameError:
                stats["bad_trade"] += 1
            continue
        try:
            ty, simple = P.message_type(m)
        except P.FrameError:
            stats["bad_type"] += 1
            continue
        if ty != P.TRADE:
            stats["not_a_trade"] += 1
            continue
        try:
            out.append(P.parse_trade(m, received_at, simple).record)  # type: ignore[arg-type]
        except P.FrameError:
            stats["bad_trade"] += 1
    return out


def received_ms(value: Any) -> int:
    """`received_at` as epoch ms (the Avro decoder gives a datetime, JSON lines an int)."""
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(value)
