"""A flow run's parameters are business values only: whoever can reach the Prefect API can start a run, and must not
choose the endpoints, credentials, paths or binaries it uses. Those come from the worker's environment."""

from __future__ import annotations

import inspect

import pytest
from coinpulse_flows import flows

pytestmark = pytest.mark.unit

BUSINESS = {"today", "as_of", "key", "start", "end", "source", "only"}  # dates, a range, a dump, a source, checks


@pytest.mark.parametrize("name", sorted(flows.ALL_FLOWS))
def test_a_flow_takes_only_business_parameters(name):
    params = set(inspect.signature(flows.ALL_FLOWS[name].fn).parameters)
    assert params <= BUSINESS, f"{name} takes {sorted(params - BUSINESS)}: read them from FlowSettings instead"


def test_a_run_cannot_set_the_settings(monkeypatch):
    with pytest.raises(TypeError, match="settings"):
        flows.backup_postgres.fn(settings={"s3_endpoint": "http://elsewhere.example"})
