"""Names of topics, PostgreSQL schemas, connectors and S3 keys, with an optional isolation namespace.

Production uses the empty namespace (`upbit.trade`, schema `silver`, connector `coinpulse-silver-trades`). Tests
use a unique one so they never share a topic, a table or a connector with anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NS = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


@dataclass(frozen=True)
class Names:
    ns: str = ""

    def __post_init__(self) -> None:
        if self.ns and not _NS.match(self.ns):
            raise ValueError(f"namespace {self.ns!r} must match {_NS.pattern}")

    @property
    def topic_prefix(self) -> str:
        return f"{self.ns}." if self.ns else ""

    @property
    def schema_prefix(self) -> str:
        return f"{self.ns}_" if self.ns else ""

    @property
    def connector_prefix(self) -> str:
        return f"{self.ns}-" if self.ns else ""

    @property
    def s3_prefix(self) -> str:
        return f"{self.ns}/" if self.ns else ""

    def topic(self, base: str) -> str:
        return self.topic_prefix + base

    def base_topic(self, topic: str) -> str:
        p = self.topic_prefix
        return topic[len(p):] if p and topic.startswith(p) else topic

    def schema(self, base: str) -> str:
        return self.schema_prefix + base

    @property
    def bronze(self) -> str:
        return self.schema("bronze")

    @property
    def silver(self) -> str:
        return self.schema("silver")

    @property
    def gold(self) -> str:
        return self.schema("gold")

    @property
    def ops(self) -> str:
        return self.schema("ops")

    def connector(self, base: str) -> str:
        return self.connector_prefix + base
