"""Prometheus metrics of the sink service (own registry, so several instances can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class SinkMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "coinpulse_sink_"
        self.connect_up = Gauge(p + "connect_up", "1 when the Connect REST API answers", registry=r)
        self.connector_running = Gauge(p + "connector_running", "1 when the connector is RUNNING", ["connector"],
                                       registry=r)
        self.tasks_running = Gauge(p + "tasks_running", "tasks in RUNNING state", ["connector"], registry=r)
        self.tasks_failed = Gauge(p + "tasks_failed", "tasks in FAILED state", ["connector"], registry=r)
        self.restarts = Counter(p + "restarts", "restarts of failed connectors and tasks", ["connector", "kind"],
                                registry=r)
        self.rewinds = Counter(p + "connect_rewinds", "connectors rewound to records dead-lettered while the schema "
                               "registry was down", ["connector"], registry=r)
        self.dead_letters_kept = Counter(p + "connect_dead_letters_kept", "dead letters of dlq.connect that are "
                                         "really bad records (left in place)", registry=r)
        self.bronze_records = Counter(p + "bronze_records", "records written to bronze objects", ["topic"],
                                      registry=r)
        self.bronze_objects = Counter(p + "bronze_objects", "bronze objects written", ["topic"], registry=r)
        self.bronze_bytes = Counter(p + "bronze_bytes", "bytes of bronze objects written", ["topic"], registry=r)
        self.bronze_dead_letters = Counter(p + "bronze_dead_letters", "undecodable records sent to dlq.sink",
                                           ["topic"], registry=r)
        self.bronze_records_expired = Counter(p + "bronze_records_expired", "records retention removed before the "
                                              "bronze sink read them (a gap in bronze)", ["topic"], registry=r)
        self.bronze_put_failures = Counter(p + "bronze_put_failures", "failed S3 puts (retried)", registry=r)
        self.bronze_last_commit = Gauge(p + "bronze_last_commit_timestamp", "unix time of the last offset commit",
                                        registry=r)
        self.partitions_created = Counter(p + "partitions_created", "daily partitions created", registry=r)
        self.default_rows = Gauge(p + "default_partition_rows", "rows waiting in a DEFAULT partition", ["table"],
                                  registry=r)
        self.migration = Gauge(p + "migration_applied", "1 for the applied Alembic revision", ["revision"],
                               registry=r)
