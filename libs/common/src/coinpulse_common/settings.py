"""Settings for the whole stack. Every field is read from an environment variable `COINPULSE_<FIELD>`.

Services extend `Settings` with their own fields (same prefix), so one `.env` configures everything.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

READER_ROLE = "coinpulse_reader"
"""The read-only PostgreSQL role (dashboard, cross-tier query): SELECT on silver, gold and the marts."""

class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COINPULSE_", env_file=".env", extra="ignore")

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
    start_timeout: float = Field(240.0, description="seconds `coinpulse up` waits for every part to be healthy")
    log_format: str = Field("console", description="`console` or `json` structured logs")
    log_level: str = Field("INFO", description="log level")

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
