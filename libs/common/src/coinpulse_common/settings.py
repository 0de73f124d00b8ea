"""Settings for the whole stack. Every field is read from an environment variable `COINPULSE_<FIELD>`, unless its
`Field` names the variable with `env_name(...)`.

Services extend `Settings` with their own fields (same prefix), so one `.env` configures everything. The rule for a
variable's name: `COINPULSE_`, then the owning service's prefix (`INGEST_`, `DC_`, `CANDLE_`, `SINK_`, `DASHBOARD_`,
or the flow group of a flows setting), then the name, then the unit of a quantity (`_S`, `_MS`, `_MINUTES`, `_DAYS`,
`_BYTES`, `_PAGES`, `_ROWS`, `_RECORDS`, ...). A variable renamed to follow it keeps its old name for one release:
`env_name(new, old=...)` accepts both (the new one wins when both are set) and every construction that finds the old
one in the environment or `.env` logs one `settings.deprecated_env` warning per old name and emits a
`DeprecationWarning`. Python attribute names never change with the variable: code and keyword construction
(`IngestSettings(markets=...)`) use the attribute.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coinpulse_common.paths import state_dir

ENV_PREFIX = "COINPULSE_"

DEPRECATED_ENV: dict[str, str] = {}
"""{old variable: new variable} of every renamed setting (filled by `env_name`), accepted until the next release."""


def env_name(new: str, *, old: str | None = None, fallback: str | None = None) -> AliasChoices:
    """The `validation_alias` of a field whose variable is not `COINPULSE_<FIELD>`: full names, the new one first.

    `old` is the deprecated former name (read, with a warning, when `new` is unset). `fallback` is another live
    variable read, without a warning, when `new` is unset (e.g. `COINPULSE_PG_BIN`, shared with the stack).
    """
    names = [new]
    for name in (old, fallback):
        if name is not None:
            if not name.startswith(ENV_PREFIX):
                raise ValueError(f"{name}: an environment name starts with {ENV_PREFIX}")
            names.append(name)
    if not new.startswith(ENV_PREFIX):
        raise ValueError(f"{new}: an environment name starts with {ENV_PREFIX}")
    if old is not None:
        DEPRECATED_ENV[old] = new
    return AliasChoices(*names)


def env_var(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of the settings class `cls` (its current name)."""
    alias = cls.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    if isinstance(alias, str):
        return alias
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def deprecated_env_vars(cls: type[BaseSettings], field: str) -> list[str]:
    """The deprecated former names of `field`'s variable (still read until the next release)."""
    alias = cls.model_fields[field].validation_alias
    if not isinstance(alias, AliasChoices):
        return []
    return [c for c in alias.choices[1:] if isinstance(c, str) and c in DEPRECATED_ENV]


def _environment(env_file: object) -> set[str]:
    """The variable names set in the process environment or the `.env` file (upper case, as settings compare)."""
    names = {k.upper() for k in os.environ}
    files = env_file if isinstance(env_file, (list, tuple)) else [env_file]
    for f in files:
        if isinstance(f, (str, Path)) and Path(f).is_file():
            from dotenv import dotenv_values

            names |= {k.upper() for k in dotenv_values(f)}
    return names


def deprecation_messages(cls: type[BaseSettings], present: set[str]) -> list[tuple[str, str, str]]:
    """(old, new, message), one per deprecated variable of `cls` found in `present` (names, upper case)."""
    out = []
    for field in cls.model_fields:
        new = env_var(cls, field)
        for old in deprecated_env_vars(cls, field):
            if old.upper() not in present:
                continue
            msg = f"{old} is deprecated: use {new} (the old name is accepted until the next release)"
            if new.upper() in present:
                msg += f"; both are set, {new} wins and {old} is ignored"
            out.append((old, new, msg))
    return out

def is_loopback_host(host: str | None) -> bool:
    """`host` (a name or an address) is this machine only: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


PLACEHOLDER_PREFIX = "change-me"
"""`.env.example`'s secrets start with it: copied unchanged, they are as public as the built-in defaults."""


def local_secret_path(name: str) -> Path:
    """Where the local stack keeps its secret `name` (see local_secret)."""
    return state_dir() / "secrets" / name


def local_secret(name: str, make: Callable[[], str]) -> str:
    """The local stack's secret `name`, kept in `<state>/secrets/NAME` (mode 0600, folder 0700); the first use makes
    it with `make()`. Concurrent first uses agree: the file appears whole (a hard link of a written temporary file)
    or not at all, and whoever comes second reads the winner's value."""
    path = local_secret_path(name)
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make() + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


PREFECT_AUTH_SECRET = "prefect-auth"
"""The local secret holding the Prefect API's `user:password` when COINPULSE_PREFECT_AUTH_STRING is unset."""


READER_ROLE = "coinpulse_reader"
"""The read-only PostgreSQL role (dashboard, cross-tier query): SELECT on silver, gold and the marts."""

class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="address every local service binds to")
    kafka_port: int = Field(29092, description="Kafka broker listener")
    kafka_controller_port: int = Field(29093, description="Kafka KRaft controller listener")
    registry_port: int = Field(28081, description="Apicurio Registry HTTP port")
    registry_management_port: int = Field(28082, description="Apicurio Registry management (health) port")
    connect_port: int = Field(28083, description="Kafka Connect REST port")
    postgres_port: int = Field(25432, description="PostgreSQL port")
    s3_port: int = Field(29000, description="S3Proxy port")
    prefect_port: int = Field(24200, description="Prefect server and UI port")
    dashboard_port: int = Field(28000, description="coinpulse dashboard port")
    sim_upbit_port: int = Field(28090, description="Upbit simulator port")
    sim_dcinside_port: int = Field(28091, description="DCInside gallery simulator port")

    kafka_bootstrap: str | None = Field(None, description="bootstrap servers; default host:kafka_port")
    registry_url: str | None = Field(
        None, description="Confluent-compatible registry URL; default http://host:registry_port/apis/ccompat/v7"
    )
    connect_url: str | None = Field(None, description="Kafka Connect REST URL; default http://host:connect_port")
    s3_endpoint: str | None = Field(None, description="S3 endpoint URL; default http://host:s3_port")
    s3_access_key: str = Field("coinpulse", description="S3 access key (set your own outside development)")
    s3_secret_key: str = Field("coinpulse-dev-secret", description="S3 secret key (set your own outside development)")
    s3_bucket: str = Field("coinpulse", description="bucket for bronze objects and Parquet tiers")
    s3_region: str = Field("us-east-1", description="S3 region")

    pg_superuser_password: str = Field("coinpulse-admin", description="password of the local `coinpulse` superuser")
    pg_writer_password: str = Field("coinpulse-writer", description="password of `coinpulse_writer` (connectors)")
    pg_reader_password: str = Field("coinpulse-reader", description="password of `coinpulse_reader` (dashboard)")
    pg_registry_password: str = Field("coinpulse-registry", description="password of `apicurio` (registry storage)")
    prefect_auth_string: str | None = Field(
        None, description="`user:password` the Prefect API requires (basic auth); default: generated on first use and "
        "kept in <state>/secrets/prefect-auth (mode 0600)"
    )
    pg_host: str | None = Field(None, description="PostgreSQL host; default `host`")
    pg_database: str = Field("coinpulse", description="database holding bronze/silver/gold schemas")

    kafka_heap: str = Field("512m", description="broker JVM heap")
    connect_heap: str = Field("768m", description="Connect JVM heap")
    registry_heap: str = Field("384m", description="Apicurio JVM heap")
    s3_heap: str = Field("384m", description="S3Proxy JVM heap")
    start_timeout: float = Field(240.0, description="seconds `coinpulse up` waits for every part to be healthy",
                                 validation_alias=env_name("COINPULSE_START_TIMEOUT_S", old="COINPULSE_START_TIMEOUT"))
    log_format: str = Field("console", description="`console` or `json` structured logs")
    log_level: str = Field("INFO", description="log level")

    @model_validator(mode="after")
    def _warn_deprecated_env(self) -> Settings:
        # structlog itself: coinpulse_common.logging reads the settings, so it cannot be imported here
        log = structlog.get_logger("coinpulse.settings")
        for old, new, msg in deprecation_messages(type(self), _environment(self.model_config.get("env_file"))):
            log.warning("settings.deprecated_env", settings=type(self).__name__, old=old, new=new, message=msg)
            warnings.warn(msg, DeprecationWarning, stacklevel=2)
        return self

    @model_validator(mode="after")
    def _refuse_public_secrets(self) -> Settings:
        """A built-in or placeholder password is refused as soon as the service it opens is not on this machine
        (outside the local development stack), with the variable to set."""
        for field, host in self.secret_hosts().items():
            value = getattr(self, field)
            if value is None:
                continue  # made on first use (local_secret): never public
            weak = ("the built-in default" if value == type(self).model_fields[field].default
                    else "the placeholder from .env.example" if value.split(":", 1)[-1].startswith(PLACEHOLDER_PREFIX)
                    else None)
            if weak is not None and not is_loopback_host(host):
                var = env_var(type(self), field)
                raise ValueError(f"{var} is {weak}, and the service it opens is at {host!r}, not on this machine: "
                                 f"set {var} to a long random secret of your own (for example `openssl rand -hex 24`, "
                                 "in the environment or in .env with mode 0600)")
        return self

    def secret_hosts(self) -> dict[str, str]:
        """{secret field: host of the service it opens}; the PostgreSQL host is `host` when none is set (the local
        stack, which binds there: `COINPULSE_HOST=0.0.0.0` opens it to every interface)."""
        pg = self.pg_host or self.host
        return {"pg_superuser_password": pg, "pg_writer_password": pg, "pg_reader_password": pg,
                "pg_registry_password": pg, "s3_secret_key": urlsplit(self.s3).hostname or self.host,
                "prefect_auth_string": urlsplit(self.prefect_api).hostname or self.host}

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"{self.host}:{self.kafka_port}"

    @property
    def registry(self) -> str:
        return self.registry_url or f"http://{self.host}:{self.registry_port}/apis/ccompat/v7"

    @property
    def registry_native(self) -> str:
        """Apicurio's own v3 API (what the Connect converter speaks)."""
        base = self.registry.split("/apis/")[0]
        return f"{base}/apis/registry/v3"

    @property
    def connect(self) -> str:
        return self.connect_url or f"http://{self.host}:{self.connect_port}"

    @property
    def s3(self) -> str:
        return self.s3_endpoint or f"http://{self.host}:{self.s3_port}"

    def pg_dsn(self, user: str = "coinpulse", password: str | None = None, database: str | None = None) -> str:
        pw = password if password is not None else self.pg_superuser_password
        return f"postgresql://{user}:{pw}@{self.pg_host or self.host}:{self.postgres_port}/{database or self.pg_database}"

    @property
    def prefect_api(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    def prefect_auth(self) -> str:
        """`user:password` of the Prefect API: COINPULSE_PREFECT_AUTH_STRING, else the local stack's own secret."""
        return self.prefect_auth_string or local_secret(
            PREFECT_AUTH_SECRET, lambda: f"coinpulse:{secrets.token_urlsafe(24)}")

    def prefect_headers(self) -> dict[str, str]:
        """The header a plain HTTP client sends to the Prefect API (Prefect's own client reads
        PREFECT_API_AUTH_STRING instead)."""
        return {"Authorization": "Basic " + base64.b64encode(self.prefect_auth().encode()).decode()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
