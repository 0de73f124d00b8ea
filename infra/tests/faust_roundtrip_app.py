"""A faust-streaming worker that decodes Avro values (Confluent wire format) and appends them to a file.

Run by test_platform_integration.py as a subprocess: `python faust_roundtrip_app.py worker --without-web`.
"""

import json
import os

import faust
from coinpulse_common.avro import TopicCodec

TOPIC = os.environ["RT_TOPIC"]
OUT = os.environ["RT_OUT"]

app = faust.App(
    os.environ["RT_APP_ID"],
    broker=f"kafka://{os.environ['RT_BOOTSTRAP']}",
    value_serializer="raw",
    web_enabled=False,
)
topic = app.topic(TOPIC, value_type=bytes, key_type=bytes)
codec = TopicCodec(TOPIC, schema_topic="upbit.trade")


@app.agent(topic)
async def decode(stream):
    async for value in stream:
        rec = codec.decode(value)
        rec["trade_timestamp"] = int(rec["trade_timestamp"].timestamp() * 1000)
        rec["received_at"] = int(rec["received_at"].timestamp() * 1000)
        with open(OUT, "a") as f:  # noqa: ASYNC230 - a test helper; tiny appends
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    app.main()
