"""Avro through the schema registry (confluent-kafka's client and serializers, against Apicurio's ccompat API).

Producers never auto-register: the contract is `schemas/`, registered by `coinpulse up`. A record that does not fit
its schema fails at serialisation, where the caller sends it to its dead-letter topic.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from coinpulse_common.paths import schemas_dir
from coinpulse_common.settings import Settings, get_settings
from coinpulse_common.topics import BY_NAME


def schema_text(stem: str) -> str:
    path = schemas_dir() / f"{stem}.avsc"
    if not path.is_file():
        raise FileNotFoundError(f"no schema {path}; every topic's schema lives in schemas/<name>.avsc")
    return path.read_text()


def topic_schema(topic: str) -> str:
    spec = BY_NAME.get(topic)
    if spec is None:
        raise KeyError(f"topic {topic!r} is not declared in coinpulse_common.topics.TOPICS")
    return schema_text(spec.schema)


def schema_fields(stem: str) -> list[str]:
    return [f["name"] for f in json.loads(schema_text(stem))["fields"]]


REGISTRY_TIMEOUT_S = 15  # per HTTP request (the client retries transport errors); None would wait forever


@lru_cache(maxsize=4)
def registry_client(url: str | None = None) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url or get_settings().registry, "timeout": REGISTRY_TIMEOUT_S})


class TopicCodec:
    """Serialize / deserialize the values of one topic with its registered schema."""

    def __init__(self, topic: str, settings: Settings | None = None, schema_topic: str | None = None):
        s = settings or get_settings()
        self.topic = topic
        client = registry_client(s.registry)
        schema = topic_schema(schema_topic or topic)
        # `<topic>-value` by name: no association lookup (a Confluent-only endpoint) on the way to the schema
        conf = {"auto.register.schemas": False, "use.latest.version": True,
                "subject.name.strategy": topic_subject_name_strategy}
        self._ser = AvroSerializer(client, schema, conf=conf)
        self._de = AvroDeserializer(client)
        self._ctx = SerializationContext(topic, MessageField.VALUE)
        if schema_topic and schema_topic != topic:
            # the subject follows the topic actually written to
            self._ctx = SerializationContext(topic, MessageField.VALUE)

    def encode(self, value: dict[str, Any]) -> bytes:
        data: bytes = self._ser(value, self._ctx)
        return data

    def decode(self, data: bytes) -> dict[str, Any]:
        value: dict[str, Any] = self._de(data, self._ctx)
        return value


def decode_any(topic: str, data: bytes | None, url: str | None = None) -> Any:
    """Decode a Confluent-wire-format value whatever its schema (used by `coinpulse topics tail`)."""
    if data is None:
        return None
    de = AvroDeserializer(registry_client(url or get_settings().registry))
    return de(data, SerializationContext(topic, MessageField.VALUE))
