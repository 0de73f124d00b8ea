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
- Each dead-lettered record is replayed at most once. A record that is corrupt behind a schema id the registry knows
  fails again after its replay and comes back as a second dead letter; without a memory the rewinder would rewind to
  it on every tick, forever. `RewindLedger` remembers every record rewound to (connector, topic, partition, offset)
  in a compacted topic, written after the rewind and before the rewinder commits its place in dlq.connect; a dead
  letter of a record already replayed is kept like any bad record.

Why a compacted topic: it lives where the rewinder's other state (its place in dlq.connect, a consumer group) and
Connect's own offsets live, so it survives a restart, a move to another host or a fresh container just as they do;
a file under the state dir would not survive the container the sink runs in, and a table would tie the rewinder to
a migration. Compaction keeps one record per replayed record; the ledger is read once, at the first tick. A crash
between a rewind and the ledger write can replay that batch once more (never lose it): replays are upserts.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from coinpulse_common.logging import get_logger
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from coinpulse_sink.metrics import SinkMetrics

log = get_logger("coinpulse.sink.rewind")

CONVERTER_STAGES = {"KEY_CONVERTER", "VALUE_CONVERTER", "HEADER_CONVERTER"}


class RegistryUnreachable(Exception):
    pass


def replay_key(connector: str, topic: str, partition: int, offset: int) -> str:
    return f"{connector}|{topic}|{partition}|{offset}"


class RewindLedger:
    """The records the rewinder has replayed, one record each in a compacted topic (key `replay_key`, value when and
    from which dead letter), created on first use."""

    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 30.0):
        self.bootstrap, self.topic, self.timeout_s = bootstrap, topic, timeout_s
        self._producer: Producer | None = None

    def _ensure_topic(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        fut = admin.create_topics([NewTopic(self.topic, 1, 1, config={"cleanup.policy": "compact"})])[self.topic]
        try:
            fut.result(self.timeout_s)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def load(self) -> set[str]:
        """Every key written so far (reads the topic to its end)."""
        self._ensure_topic()
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.topic}-reader",
                      "enable.auto.commit": False, "enable.partition.eof": True})
        seen: set[str] = set()
        try:
            parts = c.list_topics(self.topic, timeout=self.timeout_s).topics[self.topic].partitions
            ends = {}
            for p in parts:
                lo, hi = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout_s)
                if hi > lo:
                    ends[p] = hi
            c.assign([TopicPartition(self.topic, p, 0) for p in ends])
            deadline = time.monotonic() + self.timeout_s
            while ends:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.topic} not read to its end in {self.timeout_s:.0f} s")
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        ends.pop(m.partition(), None)
                        continue
                    raise KafkaException(m.error())
                if m.key() is not None and m.value() is not None:
                    seen.add(m.key().decode())
                if m.offset() + 1 >= ends.get(m.partition(), 0):
                    ends.pop(m.partition(), None)
        finally:
            c.close()
        return seen

    def add(self, entries: dict[str, dict[str, Any]]) -> None:
        """Write the keys and wait until the broker has them all (raises otherwise)."""
        if not entries:
            return
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                                       "acks": "all", "linger.ms": 5})
        errors: list[str] = []
        for key, value in entries.items():
            self._producer.produce(self.topic, key=key.encode(), value=json.dumps(value).encode(),
                                   on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
        left = self._producer.flush(self.timeout_s)
        if left or errors:
            raise RuntimeError(f"rewind ledger {self.topic}: {left} not delivered, errors {errors[:1]}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout_s)
            self._producer = None


class SchemaOutageRewinder:
    def __init__(self, bootstrap: str, dlq_topic: str, group_id: str, connect_url: str, registry_url: str,
                 connectors: set[str], metrics: SinkMetrics, timeout_s: float = 15.0, *, ledger_topic: str):
        self.bootstrap, self.dlq_topic, self.group_id = bootstrap, dlq_topic, group_id
        self.connect = connect_url.rstrip("/")
        self.registry = registry_url.rstrip("/")
        self.connectors = connectors
        self.metrics = metrics
        self.http = httpx.Client(timeout=timeout_s)
        self.consumer: Consumer | None = None
        self.ledger = RewindLedger(bootstrap, ledger_topic)
        self.replayed: set[str] | None = None  # replay keys of every record rewound to; loaded at the first tick

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
        if self.replayed is None:
            self.replayed = self.ledger.load()
        c = self._consumer()
        targets: dict[str, dict[tuple[str, int], int]] = {}
        replays: dict[str, dict[str, Any]] = {}  # this tick's, written to the ledger after the rewinds
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
                key = replay_key(connector, tp[0], tp[1], offset)
                if key in self.replayed or key in replays:
                    self._keep(self._headers(m), "replayed once already and failed again")
                else:
                    replays[key] = {"rewound_at": int(time.time() * 1000), "dlq_partition": m.partition(),
                                    "dlq_offset": m.offset()}
                    cur = targets.setdefault(connector, {})
                    cur[tp] = min(offset, cur.get(tp, offset))
            decided[m.partition()] = m.offset()
        for connector, offsets in targets.items():
            self._rewind(connector, offsets)
        self.ledger.add(replays)  # before the commit: a restart must know these were replayed
        self.replayed |= replays.keys()
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

    @staticmethod
    def _headers(m: Any) -> dict[str, str]:
        return {k: (v or b"").decode("utf-8", "replace") for k, v in (m.headers() or [])}

    def _decide(self, m: Any, known: dict[int, bool]) -> tuple[str, tuple[str, int], int] | None:
        h = self._headers(m)
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
        self.ledger.close()
        self.http.close()
