"""Run cryptofeed's Upbit feed with its Kafka backend against the local simulator (bench venv only).

    python _cryptofeed_upbit.py WS_URL REST_BASE BOOTSTRAP TRADE_TOPIC BOOK_TOPIC MARKET [MARKET ...]

Stops on SIGTERM/SIGINT. Imported by nothing in the workspace: cryptofeed lives in .coinpulse/bench-venvs/.
cryptofeed refuses non-`wss://` addresses; the simulator (like coinpulse's run) speaks plain `ws://` on loopback, so
the scheme check is relaxed here and nothing else in cryptofeed's path is changed.
"""

import sys

from cryptofeed import FeedHandler, connection
from cryptofeed.backends.kafka import BookKafka, TradeKafka
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.exchanges import Upbit

_orig_init = connection.WSAsyncConn.__init__


def _init_allow_ws(self, address, *args, **kwargs):
    _orig_init(self, "wss://" + address.removeprefix("ws://"), *args, **kwargs)
    self.address = address


connection.WSAsyncConn.__init__ = _init_allow_ws


def main() -> None:
    ws_url, rest, bootstrap, trade_topic, book_topic, *markets = sys.argv[1:]

    class LocalUpbit(Upbit):
        websocket_endpoints = [WebsocketEndpoint(ws_url)]
        rest_endpoints = [RestEndpoint(rest, routes=Routes("/v1/market/all"))]

    class Trades(TradeKafka):
        def topic(self, data):
            return trade_topic

    class Books(BookKafka):
        def topic(self, data):
            return book_topic

    symbols = [f"{m.split('-')[1]}-{m.split('-')[0]}" for m in markets]  # KRW-BTC -> BTC-KRW
    fh = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    fh.add_feed(LocalUpbit(symbols=symbols, channels=[TRADES, L2_BOOK],
                           callbacks={TRADES: Trades(bootstrap_servers=bootstrap, acks="all",
                                                     enable_idempotence=True),
                                      L2_BOOK: Books(bootstrap_servers=bootstrap, acks="all",
                                                     enable_idempotence=True)}))
    fh.run()


if __name__ == "__main__":
    main()
