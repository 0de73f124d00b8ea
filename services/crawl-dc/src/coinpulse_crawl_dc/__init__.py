"""coinpulse_crawl_dc."""
