"""compose.yaml checked structurally (no Docker engine here): builds, healthchecks, ports and settings agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from coinpulse_common.paths import repo_root
from coinpulse_common.settings import Settings

pytestmark = pytest.mark.unit

ROOT = repo_root()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
STATEFUL = {"kafka": "kafka_port", "postgres": "postgres_port", "registry": "registry_port",
            "connect": "connect_port", "s3": "s3_port", "prefect": "prefect_port"}
COINPULSE = {"ingest-upbit", "crawl-dc", "candle-agent", "sink", "sim-upbit", "sim-dcinside"}


def test_every_stateful_service_has_a_healthcheck():
    for name in STATEFUL:
        hc = SERVICES[name].get("healthcheck")
        assert hc and hc.get("test"), f"{name} has no healthcheck"


def test_host_ports_are_loopback_and_match_native_settings():
    s = Settings(_env_file=None)
    for name, field in STATEFUL.items():
        published = [p.split(":") for p in SERVICES[name].get("ports", [])]
        assert published, name
        for parts in published:
            assert parts[0] == "127.0.0.1", f"{name} publishes on {parts[0]}, not loopback"
        assert int(published[0][1]) == getattr(s, field), f"{name}: host port differs from native {field}"
    for name in SERVICES:
        for p in SERVICES[name].get("ports", []):
            assert p.startswith("127.0.0.1:"), f"{name} publishes {p} beyond loopback"


def test_builds_point_at_existing_dockerfiles_from_the_repo_root():
    for name, svc in SERVICES.items():
        build = svc.get("build")
        if build is None:
            assert "image" in svc, f"{name} has neither image nor build"
            continue
        assert build["context"] == "."
        dockerfile = ROOT / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        text = dockerfile.read_text()
        assert text.startswith("#") and "FROM " in text
    for svc in COINPULSE:
        assert (ROOT / "services" / svc / "Dockerfile").is_file()
        assert SERVICES[svc]["build"]["dockerfile"] == f"services/{svc}/Dockerfile"


def test_dependencies_wait_for_health_and_init_is_one_shot():
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use conditions"
        for dep, cond in deps.items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in ("init", "postgres-init") else "service_healthy"
            assert cond["condition"] == expected, f"{name} -> {dep}"
    assert SERVICES["init"]["restart"] == "no"
    assert set(SERVICES["init"]["depends_on"]) >= {"kafka", "registry", "connect", "s3"}
    for svc in COINPULSE:
        assert "init" in SERVICES[svc]["depends_on"]


def test_coinpulse_environment_names_are_real_settings():
    fields = {f"COINPULSE_{k.upper()}" for k in Settings.model_fields}
    service_only = {"COINPULSE_UPBIT_WS_URL", "COINPULSE_UPBIT_REST_URL", "COINPULSE_MARKETS",
                    "COINPULSE_DC_BASE_URL", "COINPULSE_DC_HASH_KEY"}
    anchors = COMPOSE["x-coinpulse-env"]
    for name, svc in SERVICES.items():
        env = {**anchors, **(svc.get("environment") or {})} if "<<" in (svc.get("environment") or {}) else \
            (svc.get("environment") or {})
        for key in env:
            if key.startswith("COINPULSE_"):
                assert key in fields | service_only, f"{name}: {key} is not a coinpulse setting"


def test_env_example_lists_every_secret_compose_requires():
    text = (ROOT / "compose.yaml").read_text()
    import re
    required = set(re.findall(r"\$\{(COINPULSE_[A-Z_]+):\?", text))
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required and required <= example


def test_connect_image_uses_the_shared_worker_config():
    df = (ROOT / "connect" / "Dockerfile").read_text()
    assert "connect/worker.properties" in df and "debezium-connector-jdbc" in df and "apicurio-converter" in df
    assert Path(ROOT / "connect" / "worker.properties").is_file()
