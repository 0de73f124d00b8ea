"""The items the spider yields: Kafka records and the completion of a post's job (the record values themselves are
built by `coinpulse_dcinside.records`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coinpulse_crawl_dc.state import StateDelta


@dataclass
class Record:
    """One Kafka record: `base_topic` is the name in coinpulse_common.topics (a prefix may be applied)."""

    base_topic: str
    key: str
    value: dict[str, Any]


@dataclass
class JobDone:
    """A post's work is complete: its records were yielded before this; the delta may be applied after commit."""

    post_no: int
    kind: str  # new | update | check
    delta: StateDelta
