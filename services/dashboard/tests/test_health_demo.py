"""The demo's first-screen step without a stack: the deployment it runs is the one the flows serve, and an
unreachable Prefect is a clear error, not a hang."""

from __future__ import annotations

import pytest
from coinpulse_common.settings import Settings
from coinpulse_platform import demo
from coinpulse_testing.net import free_port

pytestmark = pytest.mark.unit


def test_the_demo_runs_the_marts_deployment_the_flows_serve():
    from coinpulse_flows import deployments, flows

    served = {(fl.name, name) for fl, name, _cron, _desc in deployments.SCHEDULES}
    assert (demo.MARTS_FLOW, demo.MARTS_DEPLOYMENT) in served
    assert flows.gold_marts.name == demo.MARTS_FLOW  # the flow that refreshes the marts


def test_an_unreachable_prefect_is_an_error_that_says_what_was_awaited():
    s = Settings(_env_file=None, prefect_port=free_port())
    with pytest.raises(RuntimeError) as e:
        demo.refresh_marts_now(s, timeout=1.0, progress=lambda _: None)
    msg = str(e.value)
    assert "deployment gold-marts/every-5-minutes not registered" in msg and "ConnectError" in msg and "Connection refused" in msg
    assert "coinpulse logs flows" in msg
