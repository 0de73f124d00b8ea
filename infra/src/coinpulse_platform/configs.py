"""Configuration files of the native parts, rendered from Settings into `<state>/conf/`."""

from __future__ import annotations

import os
from pathlib import Path

from coinpulse_common.paths import repo_root
from coinpulse_common.settings import Settings

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{ISO8601} %-5p [%c{1}] %m%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafkaclients.name = org.apache.kafka.clients
logger.kafkaclients.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _write(path: Path, text: str, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if private:
        os.chmod(path, 0o600)
    return path


def log4j2(conf: Path) -> Path:
    return _write(conf / "log4j2.properties", LOG4J2)


def kafka_server(s: Settings, conf: Path, data: Path) -> Path:
    h = s.host
    return _write(conf / "kafka.properties", f"""\
# KRaft, single node acting as broker and controller
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{h}:{s.kafka_controller_port}
listeners=PLAINTEXT://{h}:{s.kafka_port},CONTROLLER://{h}:{s.kafka_controller_port}
advertised.listeners=PLAINTEXT://{h}:{s.kafka_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# topics come from the declarative list in coinpulse_common.topics (or explicit admin calls), never by accident
auto.create.topics.enable=false
log.retention.check.interval.ms=60000
log.cleaner.backoff.ms=5000
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
""")


def connect_worker(s: Settings, conf: Path, plugins: Path) -> Path:
    """connect/worker.properties (shared with the compose image) with this host's addresses filled in."""
    text = (repo_root() / "connect" / "worker.properties").read_text()
    text = text.replace("@BOOTSTRAP@", s.bootstrap).replace("@REGISTRY@", s.registry_native.replace("/v3", "/v2"))
    text = text.replace("listeners=http://0.0.0.0:8083", f"listeners=http://{s.host}:{s.connect_port}\n"
                        f"rest.advertised.host.name={s.host}\nrest.advertised.port={s.connect_port}")
    text = text.replace("plugin.path=/opt/connect-plugins", f"plugin.path={plugins}")
    return _write(conf / "connect.properties", text)


def s3proxy(s: Settings, conf: Path, data: Path) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    return _write(conf / "s3proxy.conf", f"""\
s3proxy.endpoint=http://{s.host}:{s.s3_port}
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity={s.s3_access_key}
s3proxy.credential={s.s3_secret_key}
jclouds.provider=filesystem
jclouds.filesystem.basedir={data}
""", private=True)


def postgres_conf(s: Settings, socket_dir: Path) -> str:
    return f"""
# coinpulse (appended by `coinpulse up`)
listen_addresses = '{s.host}'
port = {s.postgres_port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
shared_buffers = 256MB
wal_level = replica
max_wal_size = 2GB
log_destination = 'stderr'
logging_collector = off
log_min_messages = warning
"""


def pg_hba() -> str:
    return """\
# local socket: its folder is mode 0700, so only the cluster's OS owner (and root) reach it; TCP: passwords
local   all   all                   trust
host    all   all   127.0.0.1/32    scram-sha-256
"""
