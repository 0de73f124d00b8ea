import json

import pytest
from coinpulse_common import topics
from coinpulse_common.avro import schema_text
from coinpulse_common.paths import schemas_dir

pytestmark = pytest.mark.unit


def test_every_topic_has_a_parseable_schema():
    for spec in topics.TOPICS:
        schema = json.loads(schema_text(spec.schema))
        assert schema["type"] == "record", spec.name


def test_every_schema_file_is_used_by_a_topic():
    used = {t.schema for t in topics.TOPICS}
    on_disk = {p.stem for p in schemas_dir().glob("*.avsc")}
    assert on_disk == used


def test_gold_topics_are_compacted_and_others_are_not():
    for spec in topics.TOPICS:
        assert spec.compacted == (spec.tier == "gold"), spec.name
        assert spec.config()["cleanup.policy"] == ("compact" if spec.compacted else "delete")


def test_names_are_lower_case_dotted_and_unique():
    names = [t.name for t in topics.TOPICS]
    assert len(names) == len(set(names))
    for n in names:
        assert n == n.lower() and "." in n


def test_dlq_rejects_unknown_service():
    assert topics.dlq("ingest-upbit") == "dlq.ingest-upbit"
    with pytest.raises(ValueError):
        topics.dlq("nope")


def test_gold_key():
    assert topics.gold_key("KRW-BTC", 1_700_000_000_000) == "KRW-BTC|1700000000000"
