"""Built-in and placeholder passwords are refused as soon as the service they open is not on this machine."""

from __future__ import annotations

import pytest
from coinpulse_common.settings import Settings, is_loopback_host
from pydantic import ValidationError

pytestmark = pytest.mark.unit

SECRETS = {"pg_superuser_password": "COINPULSE_PG_SUPERUSER_PASSWORD",
           "pg_writer_password": "COINPULSE_PG_WRITER_PASSWORD",
           "pg_reader_password": "COINPULSE_PG_READER_PASSWORD",
           "pg_registry_password": "COINPULSE_PG_REGISTRY_PASSWORD",
           "s3_secret_key": "COINPULSE_S3_SECRET_KEY"}
STRONG = {f: f"a-long-random-{i}-7f3c9a1e55d04b2b" for i, f in enumerate(SECRETS)}
REMOTE = {"pg_host": "db.internal", "s3_endpoint": "https://s3.example.net"}


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for var in [*SECRETS.values(), "COINPULSE_PG_HOST", "COINPULSE_S3_ENDPOINT", "COINPULSE_HOST"]:
        monkeypatch.delenv(var, raising=False)


def test_the_local_stack_runs_on_the_defaults_and_the_placeholders():
    Settings()
    Settings(**{f: "change-me-x" for f in SECRETS})
    Settings(pg_host="localhost", s3_endpoint="http://[::1]:29000")


def test_own_secrets_open_remote_services():
    s = Settings(**REMOTE, **STRONG)
    assert s.secret_hosts()["pg_writer_password"] == "db.internal"
    assert s.secret_hosts()["s3_secret_key"] == "s3.example.net"


@pytest.mark.parametrize("field", list(SECRETS))
@pytest.mark.parametrize(("value", "why"), [(None, "the built-in default"),
                                            ("change-me-writer", "the placeholder from .env.example")])
def test_a_public_secret_for_a_remote_service_is_refused_naming_its_variable(field, value, why):
    secrets = dict(STRONG)
    if value is None:
        del secrets[field]  # the built-in default
    else:
        secrets[field] = value
    with pytest.raises(ValidationError) as err:
        Settings(**REMOTE, **secrets)
    text = str(err.value)
    assert f"{SECRETS[field]} is {why}" in text and f"set {SECRETS[field]} to a long random secret" in text
    assert Settings(**secrets)  # the same on the local stack: accepted


def test_binding_every_interface_is_not_local():
    with pytest.raises(ValidationError, match="COINPULSE_PG_SUPERUSER_PASSWORD is the built-in default.*'0.0.0.0'"):
        Settings(host="0.0.0.0")


def test_the_environment_is_checked_too(monkeypatch):
    monkeypatch.setenv("COINPULSE_PG_HOST", "10.0.0.5")
    for field, var in SECRETS.items():
        monkeypatch.setenv(var, STRONG[field])
    monkeypatch.setenv("COINPULSE_PG_READER_PASSWORD", "coinpulse-reader")
    with pytest.raises(ValidationError, match="COINPULSE_PG_READER_PASSWORD is the built-in default"):
        Settings()


@pytest.mark.parametrize(("host", "local"), [("localhost", True), ("127.0.0.1", True), ("127.3.4.5", True),
                                             ("::1", True), ("0.0.0.0", False), ("10.0.0.5", False),
                                             ("db.internal", False), ("", False), (None, False)])
def test_loopback_hosts(host, local):
    assert is_loopback_host(host) is local


def test_the_prefect_auth_string_is_made_once_private_and_shared(monkeypatch, tmp_path):
    monkeypatch.setenv("COINPULSE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("COINPULSE_PREFECT_AUTH_STRING", raising=False)
    first = Settings().prefect_auth()
    user, password = first.split(":", 1)
    assert user == "coinpulse" and len(password) >= 24
    path = tmp_path / "state" / "secrets" / "prefect-auth"
    assert path.stat().st_mode & 0o777 == 0o600 and (path.parent.stat().st_mode & 0o777) == 0o700
    assert Settings().prefect_auth() == first  # every later process reads the same one
    assert Settings().prefect_headers()["Authorization"].startswith("Basic ")
    assert Settings(prefect_auth_string="ops:own-secret").prefect_auth() == "ops:own-secret"


def test_the_prefect_placeholder_is_refused_off_this_machine():
    with pytest.raises(ValidationError, match="COINPULSE_PREFECT_AUTH_STRING is the placeholder"):
        Settings(host="0.0.0.0", prefect_auth_string="coinpulse:change-me-prefect", **STRONG)
    assert Settings(prefect_auth_string="coinpulse:change-me-prefect")  # the local stack
