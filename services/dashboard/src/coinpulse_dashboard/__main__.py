"""`python -m coinpulse_dashboard`: serve the dashboard on host:dashboard_port."""

from __future__ import annotations

from aiohttp import web
from coinpulse_common.logging import configure, get_logger

from coinpulse_dashboard.app import create_app
from coinpulse_dashboard.settings import get_dashboard_settings


def main() -> None:
    configure()
    s = get_dashboard_settings()
    get_logger("coinpulse.dashboard").info("dashboard listening", url=f"http://{s.host}:{s.dashboard_port}/")
    web.run_app(create_app(s), host=s.host, port=s.dashboard_port, print=None, access_log=None)


if __name__ == "__main__":
    main()
