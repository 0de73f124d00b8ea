"""The KRaft cluster id the stack formats Kafka with is one the storage tool's argument parser accepts."""

import base64

import pytest
from coinpulse_platform.stack import kafka_cluster_id

pytestmark = pytest.mark.unit


def test_cluster_ids_never_start_with_a_dash_and_are_16_byte_uuids():
    ids = [kafka_cluster_id() for _ in range(5000)]  # a plain random id starts with "-" 1 time in 64
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
