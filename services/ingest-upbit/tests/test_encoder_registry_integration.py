"""The encoder refuses to write when its schema is not registered, against the real registry (unique subjects):
it never falls back to another schema's id, so an unregistered schema never reaches a topic."""

from __future__ import annotations

import pytest
from coinpulse_common.avro import registry_client, schema_text
from coinpulse_ingest_upbit.avro import AvroEncoder, SchemaNotRegistered
from confluent_kafka.schema_registry import Schema

pytestmark = pytest.mark.integration


def test_a_subject_without_any_schema_is_refused_naming_it_and_the_fix(stack, unique):
    topic = f"it-enc-{unique}.upbit.trade"
    with pytest.raises(SchemaNotRegistered) as e:
        AvroEncoder(registry_client(stack.registry), topic, "trade", wait_s=1.0)
    assert f"{topic}-value" in str(e.value) and "uv run coinpulse up" in str(e.value)


def test_another_schema_under_the_subject_is_never_used_for_ours(stack, unique):
    topic = f"it-enc-{unique}.upbit.trade"
    reg = registry_client(stack.registry)
    other = reg.register_schema(f"{topic}-value", Schema(schema_text("dead_letter"), "AVRO"))
    with pytest.raises(SchemaNotRegistered):  # the old encoder took `other` (the latest id) and wrote trades with it
        AvroEncoder(reg, topic, "trade", wait_s=1.0)
    mine = f"it-enc-{unique}-2.upbit.trade"
    ours = reg.register_schema(f"{mine}-value", Schema(schema_text("trade"), "AVRO"))
    assert AvroEncoder(reg, mine, "trade", wait_s=1.0).schema_id == ours != other
