"""Test and benchmark support, dev-only (never a dependency of a production package; an import-linter contract
forbids production code to import it).

- `wait`: wait_for, the one way to wait on a condition (the failure names what was awaited);
- `net`: free_port, get_json;
- `procs`: `python -m MODULE` subprocesses in their own session with a log file, stopped or killed by group;
- `kafka`: reading a topic to its end, counting a topic's records, an in-memory producer for unit tests;
- `stacks`: an isolated second stack (its own state folder, every port shifted) as a context manager or fixture;
- `sandbox`, `synthetic`, `reference`: the candle agent's private topic sets, seeded trade streams and the
  brute-force candle/mention reference;
- `browser`, `sample`: the headless-Chromium CDP driver and the dashboard's synthetic day in a scratch schema;
- `plugin`: the session fixtures (`stack`, `unique`), registered from the root conftest.py.
"""
