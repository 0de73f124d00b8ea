"""The flows' serve process serves the metrics its flow runs set: a data-checks deployment served the way
`coinpulse_flows serve` serves every deployment (deployments.serve_all), a run of it created through the Prefect
server, executed by the serve process in a process of its own; then `GET /metrics` on flows_metrics_port shows
`coinpulse_consumer_records_lost` for the group that overran the retention, and a later run's value replaces it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from coinpulse_common.kafka import consumer
from coinpulse_common.settings import env_var
from coinpulse_flows.settings import FlowSettings
from coinpulse_testing.net import free_port
from confluent_kafka import TopicPartition

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVE = """
import sys
from coinpulse_flows import deployments, flows
deployments.serve_all(only=[flows.data_checks.to_deployment(name=sys.argv[1], tags=["test"])])
"""


def commit(stack, group: str, topic: str, offset: int) -> None:
    c = consumer(group, stack)
    try:
        c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        c.close()


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


@pytest.fixture
def served(stack, unique, tmp_path):
    """The serve process (its metrics URL and the deployment's id), stopped and its deployment deleted after.
    Its settings are in its environment, like a worker's: a flow run's parameters cannot set them. The consumer
    groups it checks are the test's two."""
    port, name = free_port(), f"test-{unique}"
    groups = json.dumps([f"t{unique}-overrun", f"t{unique}-healthy"])
    api = FlowSettings().prefect_api
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - the child writes it; closed at teardown
    proc = subprocess.Popen([sys.executable, "-c", SERVE, name], env={**os.environ, "PREFECT_API_URL": api,
                            "COINPULSE_FLOWS_METRICS_PORT": str(port),
                            env_var(FlowSettings, "lag_groups"): groups}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    dep = None
    try:
        deadline = time.monotonic() + 120
        while dep is None:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"deployment data-checks/{name} not registered in 120 s"
            r = httpx.get(f"{api}/deployments/name/data-checks/{name}", timeout=10, headers=AUTH())
            if r.status_code == 200:
                dep = r.json()
            else:
                time.sleep(0.5)  # polling Prefect for the served deployment
        yield {"metrics": f"http://127.0.0.1:{port}/metrics", "api": api, "deployment": dep["id"], "proc": proc,
               "log": tmp_path / "serve.log"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if dep is not None:
            httpx.delete(f"{api}/deployments/{dep['id']}", timeout=10, headers=AUTH())


def AUTH() -> dict[str, str]:  # noqa: N802 - reads like the constant it is
    return FlowSettings().prefect_headers()


RETRYABLE = {429, 502, 503}  # what a busy Prefect server answers (its SQLite locked): Prefect's own client retries them


def prefect_call(method: str, url: str, **kw) -> httpx.Response:
    """One Prefect API call, retried while the server answers "busy" (for up to 60 s), then raised for status."""
    deadline = time.monotonic() + 60
    while True:
        r = httpx.request(method, url, timeout=10, headers=AUTH(), **kw)
        if r.status_code not in RETRYABLE or time.monotonic() > deadline:
            return r.raise_for_status()
        time.sleep(1)  # back off before asking a busy server again


def run_deployment(served: dict, parameters: dict) -> dict:
    """A run of the served deployment through the Prefect server, waited for until it finished."""
    api = served["api"]
    run = prefect_call("POST", f"{api}/deployments/{served['deployment']}/create_flow_run",
                       json={"parameters": parameters}).json()
    deadline = time.monotonic() + 240
    while True:
        run = prefect_call("GET", f"{api}/flow_runs/{run['id']}").json()
        if (run.get("state") or {}).get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        assert served["proc"].poll() is None, served["log"].read_text()[-3000:]
        assert time.monotonic() < deadline, f"flow run {run['id']} still {run['state']['name']} after 240 s"
        time.sleep(0.5)  # polling the run's state


def test_the_serve_process_serves_what_its_flow_runs_set(stack, unique, expired_topic, served):
    overrun, healthy = f"t{unique}-overrun", f"t{unique}-healthy"
    commit(stack, overrun, expired_topic, 5)
    commit(stack, healthy, expired_topic, 15)
    lost = {g: f'coinpulse_consumer_records_lost{{group="{g}",partition="0",topic="{expired_topic}"}}'
            for g in (overrun, healthy)}
    assert lost[overrun] not in scrape(served["metrics"])  # up, and nothing set yet

    params = {"only": ["consumer_lag"]}
    run = run_deployment(served, params)
    assert run["state"]["type"] == "FAILED", run["state"]  # the overrun fails the check
    got = scrape(served["metrics"])
    assert (got[lost[overrun]], got[lost[healthy]]) == (7.0, 0.0), {k: v for k, v in got.items() if "lost" in k}

    # the group is reset past the expired records: the next run's value replaces the last one
    commit(stack, overrun, expired_topic, 12)
    run = run_deployment(served, params)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    got = scrape(served["metrics"])
    assert (got[lost[overrun]], got[lost[healthy]]) == (0.0, 0.0)
