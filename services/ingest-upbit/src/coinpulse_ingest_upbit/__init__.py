"""coinpulse_ingest_upbit."""
