"""The simulated world both simulators share: one clock, one scenario, the market-community coupling.

`load_scenario("default")` (or a path) reads a scenario file (format in `scenario.py`), `World(scenario)` computes
its per-minute price path and expected mentions and sentiment (`world.py`), and `minute_trades` / `minute_docs`
draw what happens inside a minute (`draws.py`). sim-upbit and sim-dcinside compute the same world from the same file
and the wall clock, independently. See libs/simworld/README.md.
"""

from coinpulse_simworld.draws import Doc, Trade, minute_docs, minute_trades, poisson
from coinpulse_simworld.scenario import (
    BUILTIN,
    COUPLINGS,
    Coupling,
    MarketSpec,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from coinpulse_simworld.ticks import krw_tick, on_grid
from coinpulse_simworld.world import DAY_MINUTES, MINUTE_MS, Series, World, minute_of, now_ms, rng_for

__all__ = [
    "BUILTIN", "COUPLINGS", "DAY_MINUTES", "MINUTE_MS", "Coupling", "Doc", "MarketSpec", "Scenario", "ScenarioError",
    "Series", "Trade", "World", "krw_tick", "load_scenario", "minute_docs", "minute_of", "minute_trades", "now_ms",
    "on_grid", "parse_scenario", "poisson", "rng_for",
]
