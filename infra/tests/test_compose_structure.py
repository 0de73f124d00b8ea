"""compose.yaml checked structurally (no Docker engine here): builds, healthchecks, ports and settings agree."""

from __future__ import annotations

import tomllib
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
COINPULSE = {"ingest-upbit", "crawl-dc", "candle-agent", "sink", "sim-upbit", "sim-dcinside", "dashboard"}
PYTHON_DOCKERFILE = "docker/python-service.Dockerfile"


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


def _workspace_members() -> dict[str, Path]:
    """uv workspace package name -> its folder, from the root pyproject's member list."""
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    return {tomllib.loads((ROOT / m / "pyproject.toml").read_text())["project"]["name"]: ROOT / m for m in members}


def test_every_python_image_is_the_shared_dockerfile_with_workspace_packages():
    members = _workspace_members()
    python_images = {name for name, svc in SERVICES.items() if "build" in svc} - {"connect"}
    assert python_images >= COINPULSE | {"init", "postgres-init"}
    for name in python_images:
        build = SERVICES[name]["build"]
        assert build["dockerfile"] == PYTHON_DOCKERFILE, f"{name} is not built from {PYTHON_DOCKERFILE}"
        packages = build.get("args", {}).get("PACKAGES", "").split()
        assert packages, f"{name}: no PACKAGES build arg"
        unknown = set(packages) - set(members)
        assert not unknown, f"{name}: {sorted(unknown)} are not uv workspace members"
    for name in COINPULSE:
        # the service's own package, and its command runs that package's __main__
        (package,) = SERVICES[name]["build"]["args"]["PACKAGES"].split()
        assert package == f"coinpulse-{name}", name
        module = package.replace("-", "_")
        assert SERVICES[name]["command"] == ["python", "-m", module], name
        assert (members[package] / "src" / module / "__main__.py").is_file(), f"{name}: {module} has no __main__"
    scripts = tomllib.loads((members["coinpulse-platform"] / "pyproject.toml").read_text())["project"]["scripts"]
    for name in ("init", "postgres-init"):
        assert "coinpulse-platform" in SERVICES[name]["build"]["args"]["PACKAGES"].split()
        assert "coinpulse-sink" in SERVICES[name]["build"]["args"]["PACKAGES"].split(), "init runs sink migrations"
        assert SERVICES[name]["command"][0] in scripts, name


def test_no_per_service_dockerfile_is_left_behind():
    left = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("services/*/Dockerfile"), *ROOT.glob("*/Dockerfile")]
                  if p.parent.name != "connect")
    assert not left, f"per-service Dockerfiles next to {PYTHON_DOCKERFILE}: {left}"


def test_shared_dockerfile_installs_the_packages_argument_frozen():
    lines = [line.strip() for line in (ROOT / PYTHON_DOCKERFILE).read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    arg = instructions.index("ARG PACKAGES")
    run = next(i for i, line in enumerate(instructions) if line.startswith("RUN "))
    copy = instructions.index("COPY . .")
    assert copy < arg < run, "ARG PACKAGES must come after COPY (shared layers) and before the RUN that reads it"
    text = "\n".join(instructions)
    assert 'uv sync --frozen --no-dev "$@"' in text and '--package "$package"' in text
    assert 'test -n "${PACKAGES:-}"' in text, "an empty PACKAGES must fail the build, not install nothing"


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
    service_only = {"COINPULSE_INGEST_UPBIT_WS_URL", "COINPULSE_INGEST_UPBIT_REST_URL", "COINPULSE_INGEST_MARKETS",
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
