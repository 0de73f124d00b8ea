"""Put back what Connect dead-lettered only because the schema registry was down.

A sink task that has no schema cached (it just started: after a Connect restart, a rebalance, a task restart) and
meets the registry down fails in its value converter, and with errors.tolerance=all Connect sends the record to
dlq.connect exactly as it would a malformed one. Those records are good. `SchemaOutageRewinder.tick()` reads the
dead letters and, for each one from a converter stage whose schema id the registry now resolves, rewinds the
connector's consumer offset to it (stop, PATCH offsets, resume; the Connect offsets API). The connector then reads
that record and everything after it again, in order; upserts make the replay of what had already landed harmless,
and nothing older overwrites anything newer.

- A dead letter whose schema id the registry answers 404 for, or that is not in the wire format, or that failed in
  the sink itself, is a real bad record: it stays in dlq.connect (counted in `dead_letters_kept`).
- While the registry cannot be reached nothing is decided: the rewinder keeps its place in dlq.connect (it commits
  its own offsets only after a rewind succeeded) and tries again on the next tick.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from coinpulse_common.logging import get_logger
from confluent_kafka import Consumer, TopicPartition

from coinpulse_sink.metrics import SinkMetrics

log = get_logger("coinpulse.sink.rewind")

CONVERTER_STAGES = {"KEY_CONVERTER", "VALUE_CONVERTER", "HEADER_CONVERTER"}


class RegistryUnreachable(Exception):
    pass


class SchemaOutageRewinder:
    def __init__(self, bootstrap: str, dlq_topic: str, group_id: str, connect_url: str, registry_url: str,
                 connectors: set[str], metrics: SinkMetrics, timeout_s: float = 15.0):
        self.bootstrap, self.dlq_topic, self.group_id = bootstrap, dlq_topic, group_id
        self.connect = connect_url.rstrip("/")
        self.registry = registry_url.rstrip("/")
        self.connectors = connectors
        self.metrics = metrics
        self.http = httpx.Client(timeout=timeout_s)
        self.consumer: Consumer | None = None

    def _consumer(self) -> Consumer:
        if self.consumer is None:
            self.consumer = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": self.group_id, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "enable.partition.eof": False})
            self.consumer.subscribe([self.dlq_topic])
        return self.consumer

    def _schema_known(self, schema_id: int, cache: dict[int, bool]) -> bool:
        if schema_id not in cache:
            try:
                r = self.http.get(f"{self.registry}/schemas/ids/{schema_id}")
            except httpx.HTTPError as e:
                raise RegistryUnreachable(str(e)) from e
            if r.status_code >= 500:
                raise RegistryUnreachable(f"HTTP {r.status_code}")
            cache[schema_id] = r.status_code == 200
        return cache[schema_id]

    def tick(self, max_records: int = 5000) -> int:
        """Read the dead letters that arrived since the last tick and rewind connectors to the good ones (returns
        how many topic-partitions were rewound). On any failure nothing past the last commit counts as read."""
        try:
            return self._tick(max_records)
        except Exception:
            self._reset()
            raise

    def _tick(self, max_records: int) -> int:
        c = self._consumer()
        targets: dict[str, dict[tuple[str, int], int]] = {}
        decided: dict[int, int] = {}  # dlq partition -> offset of the last dead letter decided on
        known: dict[int, bool] = {}
        stalled = False
        for _ in range(max_records):
            m = c.poll(0.2)
            if m is None:
                break
            if m.error():
                log.warning("dlq_read_error", error=str(m.error()))
                continue
            try:
                target = self._decide(m, known)
            except RegistryUnreachable as e:
                log.warning("rewind_waits_for_registry", error=str(e)[:200],
                            hint="dead letters wait until the schema registry answers: `coinpulse up`")
                stalled = True
                break
            if target is not None:
                connector, tp, offset = target
                cur = targets.setdefault(connector, {})
                cur[tp] = min(offset, cur.get(tp, offset))
            decided[m.partition()] = m.offset()
        for connector, offsets in targets.items():
            self._rewind(connector, offsets)
        if decided:
            c.commit(offsets=[TopicPartition(self.dlq_topic, p, o + 1) for p, o in decided.items()],
                     asynchronous=False)
        if stalled:
            self._reset()  # the consumer holds records past the undecided one: read on from the commit next time
        return sum(len(o) for o in targets.values())

    def _reset(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None

    def _decide(self, m: Any, known: dict[int, bool]) -> tuple[str, tuple[str, int], int] | None:
        h = {k: (v or b"").decode("utf-8", "replace") for k, v in (m.headers() or [])}
        connector = h.get("__connect.errors.connector.name", "")
        value = m.value() or b""
        if (connector not in self.connectors or h.get("__connect.errors.stage") not in CONVERTER_STAGES
                or len(value) < 5 or value[0] != 0):
            self._keep(h, "not a converter failure of a wire-format record")
            return None
        schema_id = int.from_bytes(value[1:5], "big")
        if not self._schema_known(schema_id, known):
            self._keep(h, f"schema id {schema_id} unknown to the registry")
            return None
        tp = (h["__connect.errors.topic"], int(h["__connect.errors.partition"]))
        return connector, tp, int(h["__connect.errors.offset"])

    def _keep(self, h: dict[str, str], why: str) -> None:
        self.metrics.dead_letters_kept.inc()
        log.info("dead_letter_kept", why=why, topic=h.get("__connect.errors.topic"),
                 offset=h.get("__connect.errors.offset"), error=h.get("__connect.errors.exception.class.name"))

    def _wait_state(self, connector: str, want: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.http.get(f"{self.connect}/connectors/{connector}/status").json()
            if st.get("connector", {}).get("state") == want:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{connector} not {want} after {timeout_s:.0f} s: {st}")
            time.sleep(0.2)

    def _rewind(self, connector: str, offsets: dict[tuple[str, int], int]) -> None:
        """Stop the connector, move its consumer offsets back to `offsets`, resume it."""
        body = {"offsets": [{"partition": {"kafka_topic": t, "kafka_partition": p}, "offset": {"kafka_offset": o}}
                            for (t, p), o in sorted(offsets.items())]}
        self.http.put(f"{self.connect}/connectors/{connector}/stop").raise_for_status()
        self._wait_state(connector, "STOPPED")
        deadline = time.monotonic() + 60
        while True:  # the stopped tasks' consumers may still be leaving the group: 409/5xx until they have
            r = self.http.patch(f"{self.connect}/connectors/{connector}/offsets", json=body)
            if r.status_code < 400:
                break
            if time.monotonic() > deadline:
                self.http.put(f"{self.connect}/connectors/{connector}/resume")
                r.raise_for_status()
            time.sleep(0.5)
        self.http.put(f"{self.connect}/connectors/{connector}/resume").raise_for_status()
        self.metrics.rewinds.labels(connector).inc()
        log.warning("connector_rewound", connector=connector,
                    offsets={f"{t}/{p}": o for (t, p), o in offsets.items()},
                    why="records dead-lettered while the schema registry was down")

    def close(self) -> None:
        self._reset()
        self.http.close()
