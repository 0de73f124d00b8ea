"""`coinpulse topics list|describe|tail`: look inside the topics, values decoded from Avro through the registry."""

from __future__ import annotations

import base64
import datetime as dt
import json
import signal
import uuid

import click
from coinpulse_common.avro import decode_any
from coinpulse_common.kafka import admin
from coinpulse_common.settings import get_settings
from coinpulse_common.topics import BY_NAME
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition


@click.group()
def topics() -> None:
    """Inspect Kafka topics."""


def _offsets(c: Consumer, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    out = {}
    for p in partitions:
        out[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
    return out


@topics.command("list")
@click.option("--all", "show_all", is_flag=True, help="include internal topics (_connect.*, __consumer_offsets)")
def list_(show_all: bool) -> None:
    """Topics with partitions, message counts and cleanup policy."""
    s = get_settings()
    md = admin(s).list_topics(timeout=10)
    c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": "coinpulse-cli"})
    try:
        for name in sorted(md.topics):
            if not show_all and name.startswith("_"):
                continue
            parts = sorted(md.topics[name].partitions)
            offs = _offsets(c, name, parts)
            msgs = sum(hi - lo for lo, hi in offs.values())
            spec = BY_NAME.get(name)
            policy = ("compact" if spec.compacted else "delete") if spec else "-"
            click.echo(f"{name:28s} partitions={len(parts):<3d} messages={msgs:<10d} cleanup={policy:8s} "
                       f"{spec.tier if spec else 'undeclared'}")
    finally:
        c.close()


@topics.command()
@click.argument("topic")
def describe(topic: str) -> None:
    """Partitions, offsets, configuration and the lag of every consumer group reading TOPIC."""
    s = get_settings()
    a = admin(s)
    md = a.list_topics(topic, timeout=10)
    if topic not in md.topics or md.topics[topic].error is not None:
        raise click.ClickException(f"topic {topic!r} does not exist; `coinpulse topics list` shows the topics")
    parts = sorted(md.topics[topic].partitions)
    c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": "coinpulse-cli"})
    try:
        offs = _offsets(c, topic, parts)
    finally:
        c.close()
    spec = BY_NAME.get(topic)
    click.echo(f"topic {topic}" + (f"  ({spec.tier}, key: {spec.key}, schema: {spec.schema}.avsc)" if spec else ""))
    for p in parts:
        lo, hi = offs[p]
        click.echo(f"  partition {p}: leader={md.topics[topic].partitions[p].leader} low={lo} high={hi} "
                   f"messages={hi - lo}")
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    cfg = a.describe_configs([res])[res].result()
    for k in ("cleanup.policy", "retention.ms", "min.cleanable.dirty.ratio"):
        if k in cfg:
            click.echo(f"  {k}={cfg[k].value}")
    # consumer groups with committed offsets on this topic
    groups = [g.group_id for g in a.list_consumer_groups().result().valid]
    from confluent_kafka import ConsumerGroupTopicPartitions
    for g in sorted(groups):
        req = [ConsumerGroupTopicPartitions(g, [TopicPartition(topic, p) for p in parts])]
        try:
            got = a.list_consumer_group_offsets(req)[g].result()
        except Exception:  # noqa: BLE001
            continue
        committed = {tp.partition: tp.offset for tp in got.topic_partitions if tp.offset >= 0}
        if not committed:
            continue
        lag = sum(offs[p][1] - committed.get(p, offs[p][0]) for p in parts)
        click.echo(f"  group {g}: lag={lag} " + " ".join(f"p{p}={committed.get(p, '-')}" for p in parts))


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(v).decode()
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return v


@topics.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="start at the oldest record (default: only new records)")
@click.option("--max", "max_n", type=int, default=None, help="stop after N records")
@click.option("--follow", is_flag=True, help="keep waiting for new records (default: stop at the end)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def tail(topic: str, from_beginning: bool, max_n: int | None, follow: bool, as_json: bool) -> None:
    """Print TOPIC's records decoded from Avro through the registry."""
    s = get_settings()
    c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": f"coinpulse-tail-{uuid.uuid4()}",
                  "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10)
    if topic not in md.topics or md.topics[topic].error is not None:
        c.close()
        raise click.ClickException(f"topic {topic!r} does not exist; `coinpulse topics list` shows the topics")
    parts = sorted(md.topics[topic].partitions)
    offs = _offsets(c, topic, parts)
    if not from_beginning and not follow and max_n is None:
        # without --from-beginning and --follow show the last 10 records per partition
        start = {p: max(lo, hi - 10) for p, (lo, hi) in offs.items()}
    else:
        start = {p: OFFSET_BEGINNING if from_beginning else OFFSET_END for p in parts}
    c.assign([TopicPartition(topic, p, start[p]) for p in parts])
    remaining = {p: hi for p, (lo, hi) in offs.items() if hi > (lo if start[p] < 0 else start[p])}
    if start and not from_beginning and not follow and max_n is None:
        remaining = {p: hi for p, (lo, hi) in offs.items() if hi > start[p]}
    elif not from_beginning:
        remaining = {}
    n = 0
    stop = False

    def _sig(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _sig)
    try:
        while not stop:
            if max_n is not None and n >= max_n:
                break
            if not follow and not remaining:
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise click.ClickException(str(msg.error()))
            p = msg.partition()
            if p in remaining and msg.offset() + 1 >= remaining[p]:
                del remaining[p]
            try:
                value = decode_any(topic, msg.value(), s.registry)
            except Exception as e:  # noqa: BLE001 - show undecodable records rather than dying
                value = {"_undecodable": str(e), "_raw": _jsonable(msg.value())}
            key = msg.key().decode("utf-8", "replace") if msg.key() else None
            rec = {"topic": topic, "partition": p, "offset": msg.offset(), "timestamp": msg.timestamp()[1],
                   "key": key, "value": _jsonable(value)}
            if as_json:
                click.echo(json.dumps(rec, ensure_ascii=False, default=str))
            else:
                click.echo(f"{p}:{msg.offset()} {key} {json.dumps(rec['value'], ensure_ascii=False, default=str)}")
            n += 1
    finally:
        c.close()
