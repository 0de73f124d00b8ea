"""Ingest's encoders are coinpulse_common.wire's (exactly the local schema's id, never another's); names kept."""

from coinpulse_common.wire import FastEncoder as AvroEncoder
from coinpulse_common.wire import SchemaNotRegistered

__all__ = ["AvroEncoder", "SchemaNotRegistered"]
