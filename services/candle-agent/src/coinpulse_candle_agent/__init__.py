"""coinpulse_candle_agent."""
