"""sink settings: `COINPULSE_SINK_*` environment variables, on top of the shared Settings."""

from __future__ import annotations

from pathlib import Path

from coinpulse_common.paths import repo_root
from coinpulse_common.settings import Settings
from pydantic import Field


class SinkSettings(Settings):
    sink_metrics_port: int = Field(28104, description="health (/health) and Prometheus (/metrics) port")
    sink_namespace: str = Field(
        "", description="isolation prefix: topics `<ns>.<topic>`, schemas `<ns>_<schema>`, connectors `<ns>-<name>`, "
        "S3 keys `<ns>/bronze/...` (tests); empty in production")
    sink_connect_dir: str = Field("", description="folder of connector JSON files; default <repo>/connect")
    sink_connectors: str = Field("", description="comma-separated connector file stems to apply; empty: every file")
    sink_migrate_on_start: bool = Field(True, description="apply Alembic migrations at start-up")
    sink_apply_connectors: bool = Field(True, description="apply and supervise the connectors in sink_connect_dir")
    sink_supervise_interval_s: float = Field(5.0, description="how often connector and task states are polled")
    sink_restart_base_s: float = Field(2.0, description="first restart backoff of a failed connector or task")
    sink_restart_cap_s: float = Field(300.0, description="longest restart backoff")
    sink_partitions_ahead_days: int = Field(3, description="daily partitions created this many days ahead")
    sink_partitions_back_days: int = Field(1, description="daily partitions ensured this many days back")
    sink_partition_interval_s: float = Field(3600.0, description="how often partitions are created ahead")
    sink_bronze: bool = Field(True, description="run the bronze S3 sink (upbit.raw, dc.raw -> JSON lines)")
    sink_bronze_group: str = Field("coinpulse-sink-bronze", description="consumer group of the bronze S3 sink")
    sink_bronze_instance: str = Field("", description="static group member id of this sink (default: host name)")
    sink_bronze_flush_records: int = Field(5000, description="an object closes at this many records")
    sink_bronze_flush_bytes: int = Field(8 * 1024 * 1024, description="an object closes at this size")
    sink_bronze_max_age_s: float = Field(60.0, description="an open object is written after this long")

    def connect_dir(self) -> Path:
        return Path(self.sink_connect_dir) if self.sink_connect_dir else repo_root() / "connect"
