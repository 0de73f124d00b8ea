"""The Upbit wire format, once.

- `coinpulse_upbit.fields`: the field tables, DEFAULT ↔ SIMPLE names for trade, ticker and orderbook frames;
- `coinpulse_upbit.protocol`: the WebSocket frame parsers (trade, ticker, orderbook, status, error), the REST
  `/v1/trades/ticks` parser, with the strict field rules (a mistyped field is a `FrameError`, never a guess), and
  the subscribe request;
- `coinpulse_upbit.bronze`: the bronze frame reader (an `upbit.raw` record → the trades it holds), by the same
  parsers.

The live ingester (services/ingest-upbit) and the backfill (flows) import these; the simulator (services/sim-upbit)
keeps its own writer as an independent oracle, held to this parser by `libs/upbit/tests/test_sim_parity.py`.
"""
