"""The sink service: migrate, create partitions ahead, apply and supervise connectors, run the bronze S3 sink,
serve /health and /metrics."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import psycopg
from coinpulse_common.logging import get_logger
from coinpulse_common.serve import MetricsServer

from coinpulse_sink import connectors as cfiles
from coinpulse_sink import db
from coinpulse_sink.bronze_sink import BronzeS3Sink
from coinpulse_sink.metrics import SinkMetrics
from coinpulse_sink.naming import Names
from coinpulse_sink.rewind import SchemaOutageRewinder
from coinpulse_sink.settings import SinkSettings
from coinpulse_sink.supervisor import ConnectSupervisor

log = get_logger("coinpulse.sink")


def wanted_connectors(s: SinkSettings, names: Names) -> dict[str, dict[str, str]]:
    return dict(cfiles.render(c, s, names) for c in cfiles.load(s.connect_dir(), s.sink_connectors))


class SinkService:
    def __init__(self, s: SinkSettings):
        self.s = s
        self.names = Names(s.sink_namespace)
        self.metrics = SinkMetrics()
        self.stop = threading.Event()
        self.supervisor: ConnectSupervisor | None = None
        self.rewinder: SchemaOutageRewinder | None = None
        self.bronze: BronzeS3Sink | None = None
        self.partitions: dict[str, Any] = {"last_run": None, "default_rows": {}, "error": None}
        self.revision: str | None = None
        self._threads: list[threading.Thread] = []
        self._http: MetricsServer | None = None

    # -- parts ----------------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        db.migrate(self.s, self.names)
        self.revision = db.current_revision(self.s, self.names)
        self.metrics.migration.labels(self.revision or "none").set(1)
        log.info("migrated", revision=self.revision, namespace=self.names.ns or "-")

    def maintain_partitions(self) -> None:
        try:
            rep = db.maintain_partitions(self.s, self.names)
        except psycopg.Error as e:
            self.partitions["error"] = str(e)[:300]
            log.error("partition_maintenance_failed", error=str(e)[:300])
            return
        self.metrics.partitions_created.inc(rep.created)
        for table, n in rep.default_rows.items():
            self.metrics.default_rows.labels(table).set(n)
            if n:
                log.warning("rows_in_default_partition", table=table, rows=n)
        self.partitions = {"last_run": time.time(), "created": rep.created, "default_rows": rep.default_rows,
                           "error": None}

    def _partition_loop(self) -> None:
        while not self.stop.wait(self.s.sink_partition_interval_s):
            self.maintain_partitions()

    def _supervise_loop(self) -> None:
        assert self.supervisor is not None
        while not self.stop.is_set():
            try:
                self.supervisor.tick()
            except Exception as e:  # noqa: BLE001 - the supervisor must outlive any one bad answer
                log.error("supervisor_tick_failed", error=str(e)[:300])
            if self.rewinder is not None and self.supervisor.connect_up:
                try:
                    self.rewinder.tick()
                except Exception as e:  # noqa: BLE001 - tried again on the next tick, from its last commit
                    log.error("rewind_failed", error=str(e)[:300])
            self.stop.wait(self.s.sink_supervise_interval_s)

    def _bronze_loop(self) -> None:
        assert self.bronze is not None
        while not self.stop.is_set():
            try:
                self.bronze.run(self.stop)
            except Exception as e:
                log.exception("bronze_sink_crashed", error=str(e)[:300])
                self.bronze.last_error = str(e)[:300]
                if self.stop.wait(5):
                    return
                self.bronze = BronzeS3Sink(self.s, self.names, self.metrics)

    # -- health -----------------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        sup = self.supervisor.health() if self.supervisor else None
        br = self.bronze.health() if self.bronze else None
        ok = ((self.supervisor is None or self.supervisor.healthy) and (br is None or br["alive"])
              and self.partitions.get("error") is None and not any(self.partitions.get("default_rows", {}).values()))
        return {"ok": ok, "namespace": self.names.ns, "revision": self.revision, "connect": sup, "bronze": br,
                "partitions": self.partitions}

    def _serve(self) -> int:
        """/health (`health`) and /metrics (the sink's own registry) by coinpulse_common.serve on a daemon thread;
        returns the bound port. A port in use raises OSError here."""
        def check() -> tuple[bool, dict[str, Any]]:
            h = self.health()
            return h["ok"], h

        server = MetricsServer("sink", check, host=self.s.host, port=self.s.sink_metrics_port,
                               registry=self.metrics.registry)
        port = server.start()
        self._http = server
        return port

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.s.sink_migrate_on_start:
            self.migrate()
        self.maintain_partitions()
        port = self._serve()
        spawn = [("partitions", self._partition_loop)]
        if self.s.sink_apply_connectors:
            self.supervisor = ConnectSupervisor(self.s.connect, wanted_connectors(self.s, self.names), self.metrics,
                                                self.s.sink_restart_base_s, self.s.sink_restart_cap_s)
            self.rewinder = SchemaOutageRewinder(
                self.s.bootstrap, self.names.topic("dlq.connect"), self.names.topic("coinpulse-sink-rewind"),
                self.s.connect, self.s.registry, set(self.supervisor.wanted), self.metrics,
                ledger_topic=self.names.topic("coinpulse-sink-rewound"))
            spawn.append(("supervisor", self._supervise_loop))
        if self.s.sink_bronze:
            self.bronze = BronzeS3Sink(self.s, self.names, self.metrics)
            spawn.append(("bronze", self._bronze_loop))
        for name, fn in spawn:
            t = threading.Thread(target=fn, name=f"sink-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("sink_started", port=port, namespace=self.names.ns or "-",
                 connectors=list(self.supervisor.wanted) if self.supervisor else [], bronze=self.s.sink_bronze)

    def shutdown(self) -> None:
        self.stop.set()
        if self._http is not None:
            self._http.stop()
        for t in self._threads:
            t.join(30)
        if self.supervisor is not None:
            self.supervisor.close()
        if self.rewinder is not None:
            self.rewinder.close()
        log.info("sink_stopped")

    def run_forever(self) -> None:
        self.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        self.stop.wait()
        self.shutdown()
