"""The workspace's pytest plugin (session fixtures `stack`, `unique`, ...) lives in the dev-only test support
package: libs/testing/src/coinpulse_testing/plugin.py."""

pytest_plugins = ["coinpulse_testing.plugin"]
