"""Connector files (connect/*.json): load, render placeholders, compare with what Connect runs.

A file is `{"name": ..., "config": {...}}`. Values may hold placeholders, resolved at apply time so no secret is
ever committed:

- `${env:NAME}`: the environment variable NAME; for `COINPULSE_<FIELD>` the Settings field's value when unset
  (same syntax as Kafka Connect's EnvVarConfigProvider). A secret in WORKER_RESOLVED (the PostgreSQL writer's
  password) is not rendered: the placeholder goes to Connect as it is, and the worker resolves it from its own
  environment when it starts a task (`config.providers=env` in connect/worker.properties). So no password is in
  what Connect's REST API shows (`GET /connectors/<name>/config`) or in its `_connect.configs` topic;
- `${coinpulse:KEY}`: computed values — `jdbc_url`, `registry_v2_url` (what the Apicurio converter speaks),
  `topic_prefix`, `schema_prefix` (the test namespace).

Each file pins the value converter: the Apicurio 2.6 converter reads the Confluent 4-byte id as a contentId (what
Apicurio 3's ccompat API hands out) only with the Legacy4ByteIdHandler set explicitly; with `as-confluent=true`
it resolves it as a globalId, which names a different schema as soon as the two numbers diverge. It also keeps
resolved schemas (a content id names immutable content) through a registry outage: `fault-tolerant-refresh` and a
day-long `check-period-ms`; with the defaults every record needing a refresh while the registry was down became a
dead letter instead of a row.

An unresolvable placeholder is an error: nothing half-rendered is sent to Connect.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coinpulse_sink.naming import Names
from coinpulse_sink.settings import SinkSettings

PLACEHOLDER = re.compile(r"\$\{(env|coinpulse):([A-Za-z0-9_.]+)\}")
WORKER_RESOLVED = frozenset({"COINPULSE_PG_WRITER_PASSWORD"})
"""Environment placeholders the Connect worker resolves itself; it must be started with these variables set
(coinpulse_platform's Connect part passes them; compose.yaml's connect service too)."""


@dataclass(frozen=True)
class ConnectorFile:
    stem: str
    name: str
    config: dict[str, str]


def load(folder: Path, only: str = "") -> list[ConnectorFile]:
    wanted = {x.strip() for x in only.split(",") if x.strip()}
    out = []
    for path in sorted(folder.glob("*.json")):
        if wanted and path.stem not in wanted:
            continue
        doc = json.loads(path.read_text())
        if set(doc) != {"name", "config"} or not isinstance(doc["config"], dict):
            raise ValueError(f"{path}: a connector file is {{\"name\": ..., \"config\": {{...}}}}")
        out.append(ConnectorFile(path.stem, doc["name"], {k: str(v) for k, v in doc["config"].items()}))
    if wanted - {c.stem for c in out}:
        raise ValueError(f"no connector file for {sorted(wanted - {c.stem for c in out})} in {folder}")
    return out


def computed(s: SinkSettings, names: Names) -> dict[str, str]:
    return {
        "jdbc_url": f"jdbc:postgresql://{s.host}:{s.postgres_port}/{s.pg_database}",
        "topic_prefix": names.topic_prefix,
        "schema_prefix": names.schema_prefix,
        "registry_v2_url": s.registry.split("/apis/")[0] + "/apis/registry/v2",
    }


def _env(name: str, s: SinkSettings, environ: dict[str, str]) -> str:
    if name in environ:
        return environ[name]
    if name.startswith("COINPULSE_"):
        field = name[len("COINPULSE_"):].lower()
        if field in type(s).model_fields:
            return str(getattr(s, field))
    raise KeyError(f"environment variable {name} is not set")


def render_value(value: str, s: SinkSettings, names: Names, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    comp = computed(s, names)

    def sub(m: re.Match[str]) -> str:
        kind, key = m.group(1), m.group(2)
        if kind == "env":
            return m.group(0) if key in WORKER_RESOLVED else _env(key, s, env)  # type: ignore[arg-type]
        if key not in comp:
            raise KeyError(f"unknown placeholder ${{coinpulse:{key}}}; known: {', '.join(sorted(comp))}")
        return comp[key]

    return PLACEHOLDER.sub(sub, value)


def render(c: ConnectorFile, s: SinkSettings, names: Names, environ: dict[str, str] | None = None
           ) -> tuple[str, dict[str, str]]:
    """The connector's name in this namespace and its config with every placeholder resolved (except the
    WORKER_RESOLVED secrets, which the worker resolves)."""
    cfg = {k: render_value(v, s, names, environ) for k, v in c.config.items()}
    return names.connector(c.name), cfg


def differs(wanted: dict[str, str], running: dict[str, Any] | None) -> bool:
    """True when Connect's config is not what the file says (Connect adds `name`; ignore it)."""
    if running is None:
        return True
    have = {k: str(v) for k, v in running.items() if k != "name"}
    return have != {k: v for k, v in wanted.items() if k != "name"}
