"""coinpulse dashboard: candles with community mentions, KPI tables, recent posts and pipeline health, live."""
