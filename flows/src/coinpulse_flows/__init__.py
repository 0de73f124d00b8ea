"""coinpulse_flows."""
