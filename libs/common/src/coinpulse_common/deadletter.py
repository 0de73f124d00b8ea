"""The dead-letter record: what every service writes to `dlq.<service>` (schema `schemas/dead_letter.avsc`).

`dead_letter_record` is the one place that builds it:
- `reason` is cut to `MAX_REASON_CHARS` (2000) characters;
- `failed_at` is the time of the call in epoch milliseconds (or the one given);
- `payload` is the raw input as bytes: a str is encoded UTF-8 with `surrogateescape` (bytes a decoder let through
  as surrogates come back as they were), None becomes b""; it is cut to `MAX_PAYLOAD_BYTES` (1,000,000), so one
  huge page or frame cannot make the letter itself too big for the broker;
- `key` is a str (bytes are decoded UTF-8, undecodable bytes replaced) or None;
- every `context` value is stringified (the schema's map holds strings).

It only builds the dict; encoding and sending stay with the caller (`coinpulse_common.kafka.DeadLetters`, the
candle agent's Faust producer, the ingester's sink).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

MAX_REASON_CHARS = 2000
MAX_PAYLOAD_BYTES = 1_000_000


def dead_letter_record(service: str, reason: str, payload: bytes | str | None, *, source: str | None = None,
                       key: str | bytes | None = None, context: Mapping[str, Any] | None = None,
                       failed_at_ms: int | None = None) -> dict[str, Any]:
    """The `dead_letter.avsc` record for input `service` rejected because of `reason` (see the module docstring)."""
    if payload is None:
        payload = b""
    elif isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogateescape")
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    return {
        "service": service,
        "reason": reason[:MAX_REASON_CHARS],
        "failed_at": int(time.time() * 1000) if failed_at_ms is None else failed_at_ms,
        "source": source,
        "key": key,
        "payload": bytes(payload[:MAX_PAYLOAD_BYTES]),
        "context": {str(k): str(v) for k, v in (context or {}).items()},
    }
