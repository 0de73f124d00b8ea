"""Fixtures of the dashboard tests: a day of 1-minute data for 20 markets in a scratch schema (integration)."""

from __future__ import annotations

import uuid

import pytest
from coinpulse_dashboard.settings import DashboardSettings
from coinpulse_testing import sample


@pytest.fixture(scope="module")
def sample_day(stack):
    """A unique schema holding candles (1m/5m/1h), mentions, posts and the link marts; dropped afterwards."""
    schema = f"dash_{uuid.uuid4().hex[:10]}"
    dsn = stack.pg_dsn()
    day = sample.generate(schema)
    sample.write(dsn, day)
    yield day
    sample.drop(dsn, schema)


@pytest.fixture(scope="module")
def dash_settings(stack, sample_day) -> DashboardSettings:
    return DashboardSettings(_env_file=None, dashboard_gold_schema=sample_day.schema,
                             dashboard_silver_schema=sample_day.schema, dashboard_marts_schema=sample_day.schema,
                             dashboard_tick_s=0.5,
                             dashboard_health_s=2.0)
