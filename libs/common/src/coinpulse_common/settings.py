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

import os
import warnings
from functools import lru_cache
from pathlib import Path

import structlog
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
