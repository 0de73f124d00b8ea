"""coinpulse_sim_upbit."""
