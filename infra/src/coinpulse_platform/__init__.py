"""coinpulse_platform."""
