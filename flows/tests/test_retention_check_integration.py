"""Retention overrun: a consumer group whose committed offset is below its partition's log start offset lost the
records in between without a word. The data check names the group, topic, partition and how many; a healthy group
passes. Real Kafka (log start moved forward with delete-records, as retention would) and the Prefect server."""

from __future__ import annotations

import pytest
from coinpulse_common.kafka import consumer
from coinpulse_flows import checks, flows
from coinpulse_flows.settings import FlowSettings
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration


def commit(stack, group: str, topic: str, offset: int) -> None:
    c = consumer(group, stack)
    try:
        c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        c.close()


def test_a_group_committed_below_the_log_start_fails_the_check_with_what_it_lost(stack, unique, expired_topic,
                                                                                flow_settings):
    overrun, healthy = f"t{unique}-overrun", f"t{unique}-healthy"
    commit(stack, overrun, expired_topic, 5)
    commit(stack, healthy, expired_topic, 15)

    problems = checks.retention_overrun(FlowSettings(lag_groups=[overrun, healthy]))
    assert problems == [f"retention overrun: group {overrun} lost 7 records of {expired_topic} partition 0 "
                        "(offsets 5..11 expired before it read them; committed 5, log start 12)"]
    assert REGISTRY.get_sample_value("coinpulse_consumer_records_lost",
                                     {"group": overrun, "topic": expired_topic, "partition": "0"}) == 7
    assert REGISTRY.get_sample_value("coinpulse_consumer_records_lost",
                                     {"group": healthy, "topic": expired_topic, "partition": "0"}) == 0

    flow_settings(lag_groups=[overrun, healthy])
    state = flows.data_checks(only=["consumer_lag"], return_state=True)
    assert state.is_failed()
    assert f"group {overrun} lost 7 records of {expired_topic} partition 0" in state.message
    assert healthy not in state.message


def test_a_group_at_or_above_the_log_start_passes(stack, unique, expired_topic, flow_settings):
    at, above = f"t{unique}-at", f"t{unique}-above"
    commit(stack, at, expired_topic, 12)  # the next record it reads is the oldest one still there: nothing lost
    commit(stack, above, expired_topic, 20)
    assert checks.retention_overrun(FlowSettings(lag_groups=[at, above])) == []
    flow_settings(lag_groups=[at, above])
    assert flows.data_checks(only=["consumer_lag"])["checks"] == ["consumer_lag"]
