"""A record Kafka never took ends the worker before anything later is committed (the outage test is
services/ingest-upbit/tests/test_broker_outage_integration.py, which runs the agent through a broker outage)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError
from coinpulse_candle_agent.app import EXIT_DELIVERY_FAILED, CandleAgent, DeliveryGuard
from coinpulse_candle_agent.settings import CandleSettings
from coinpulse_common.kafka import MAX_DELIVERY_TIMEOUT_S
from faust.types.tuples import FutureMessage, PendingMessage
from pydantic import ValidationError

pytestmark = pytest.mark.unit


def test_the_producer_retries_for_the_configured_delivery_timeout():
    # Faust's own default is 20 min; a broker outage longer than that used to end with the records dropped
    assert CandleSettings().candle_delivery_timeout_s == 7 * 86400
    app = CandleAgent(CandleSettings(candle_delivery_timeout_s=45), trade_partitions=3).app
    assert app.conf.producer_request_timeout == 45
    assert app.producer.request_timeout == 45  # what aiokafka is given as request_timeout_ms (its batch expiry)


@pytest.mark.parametrize("value", [0, -1, MAX_DELIVERY_TIMEOUT_S + 1])
def test_a_delivery_timeout_out_of_range_is_refused(value):
    with pytest.raises(ValidationError, match="COINPULSE_CANDLE_DELIVERY_TIMEOUT_S must be > 0"):
        CandleSettings(candle_delivery_timeout_s=value)


async def test_a_send_kafka_never_took_ends_the_worker_at_once():
    """Through Faust's own completion path of a send: the failed record's callback ends the process."""
    agent = CandleAgent(CandleSettings(), trade_partitions=3)
    guards = [s for s in agent.app.sensors if isinstance(s, DeliveryGuard)]
    assert len(guards) == 1, "the guard is registered with the app's sensors"
    exits: list[int] = []
    guards[0]._exit = exits.append
    topic = agent.out["1m"]
    msg = FutureMessage(PendingMessage(topic, b"k", b"v", None, None, None, "raw", "raw", None))
    state = agent.app.sensors.on_send_initiated(None, topic.get_topic_name(), msg.message, 1, 1)
    ok = asyncio.get_running_loop().create_future()
    ok.set_result(None)
    topic._on_published(ok, message=msg, producer=None, state=state)
    assert exits == [], "a delivered record ends nothing"

    msg = FutureMessage(PendingMessage(topic, b"k", b"v", None, None, None, "raw", "raw", None))
    state = agent.app.sensors.on_send_initiated(None, topic.get_topic_name(), msg.message, 1, 1)
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(KafkaTimeoutError("batch expired"))
    topic._on_published(failed, message=msg, producer=None, state=state)
    assert exits == [EXIT_DELIVERY_FAILED]
    with pytest.raises(KafkaTimeoutError):
        msg.result()


async def test_debug_tasks_shows_where_each_task_waits_down_to_the_innermost_await():
    """/debug/tasks walks each task's await chain (asyncio's print_stack shows only the outer frame)."""
    from coinpulse_candle_agent.app import task_stacks

    gate = asyncio.Event()

    async def innermost_wait() -> None:
        await gate.wait()

    async def outer() -> None:
        await innermost_wait()

    task = asyncio.get_running_loop().create_task(outer(), name="probe-task")
    await asyncio.sleep(0)
    text = task_stacks()
    gate.set()
    await task
    block = text.split("--- probe-task ")[1].split("\n---")[0]
    names = [line.rsplit(" in ", 1)[1] for line in block.splitlines() if " in " in line]
    assert names[:3] == ["outer", "innermost_wait", "wait"], block


async def test_input_waits_until_every_output_schema_id_is_known():
    """The engines mark what they emit as they apply input: an output encoded only then, with the registry down,
    was never emitted (CI: the first 1-minute candles of two markets missing after the registry's kill -9)."""
    from coinpulse_common.wire import SchemaNotRegistered

    agent = CandleAgent(CandleSettings(), trade_partitions=3)
    assert {e.subject for e in agent.encoders} >= {"candle.1m-value", "candle.5m-value", "candle.1h-value",
                                                   "mention.1m-value", "candle.late-value", "dlq.candle-agent-value"}
    calls: list[str] = []
    down = {"candle.5m-value": 2}  # the registry refuses twice, then answers

    def lookup(enc):
        def one() -> None:
            calls.append(enc.subject)
            if down.get(enc.subject, 0) > 0:
                down[enc.subject] -= 1
                raise SchemaNotRegistered("registry unreachable")
            enc.schema_id, enc._header = 7, b"\0\0\0\0\7"
        return one

    for enc in agent.encoders:
        enc._lookup = lookup(enc)
    await agent._outputs_ready()
    assert all(e.schema_id == 7 for e in agent.encoders)
    assert calls.count("candle.5m-value") == 3 and agent.metrics["registry_waits"] == 2
    calls.clear()
    await agent._outputs_ready()
    assert calls == [], "looked up once"


async def test_an_error_while_a_chunk_is_applied_reloads_the_engine_and_reads_again():
    agent = CandleAgent(CandleSettings(), trade_partitions=3)
    agent.candles.engines[1] = object()  # an engine that applied half a chunk
    agent.candles.anchors[1] = (0, None, 5)
    seeks: list[bool] = []

    async def perform_seek() -> None:
        seeks.append(True)

    agent.app.consumer.perform_seek = perform_seek
    await agent._reread(agent.candles, 1, ValueError("a bug"))
    assert 1 not in agent.candles.engines and 1 not in agent.candles.anchors
    assert seeks == [True] and agent.metrics["processing_failures"] == 1
