"""coinpulse_sim_dcinside."""
