"""coinpulse_sink."""
