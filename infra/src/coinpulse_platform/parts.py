"""The stack's parts: one small class per process (prepare, command, health, after-healthy) and their OS helpers.

`stack.py` runs them (parallel start on health checks, pidfiles, stop); this module says what each one is.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from coinpulse_common.paths import state_dir
from coinpulse_common.settings import Settings

from coinpulse_platform import artifacts, configs

PG_BIN_CANDIDATES = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]


def pg_bin(tool: str) -> str:
    env = os.environ.get("COINPULSE_PG_BIN")
    for d in ([env] if env else []) + PG_BIN_CANDIDATES:
        if d and Path(d, tool).is_file():
            return str(Path(d, tool))
    found = shutil.which(tool)
    if found:
        return found
    raise RuntimeError(
        f"PostgreSQL's `{tool}` not found; install PostgreSQL 15 (Debian: apt-get install postgresql-15) "
        "or set COINPULSE_PG_BIN to its bin folder"
    )


def _http_ok(url: str, timeout: float = 1.5, headers: dict[str, str] | None = None) -> httpx.Response | None:
    try:
        r = httpx.get(url, timeout=timeout, headers=headers)
    except httpx.HTTPError:
        return None
    return r


class Part:
    """One process of the stack: how it is prepared, started, proven healthy and finished once healthy.

    A subclass sets `name`, `deps`, the stop signal and timeout, and implements `command` and `health`; `prepare`
    (before each start: config files, data directory) and `after_healthy` (bootstrap: roles, buckets, config) are
    optional. `ctx` is the stack (its settings `s`, folders, `progress`, `paths()` and `java()`).
    """

    name: str = ""
    deps: tuple[str, ...] = ()
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.s: Settings = ctx.s
        self.meta: dict = {}

    @property
    def port(self) -> int:
        raise NotImplementedError

    def prepare(self) -> None:
        pass

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def health(self) -> tuple[bool, str]:
        raise NotImplementedError

    def after_healthy(self) -> None:
        pass

    def jvm(self, heap: str, c1: bool = False, java: int = 17) -> list[str]:
        """The JVM options every Java part starts with (C1 + serial GC for the small ones)."""
        opts = [self.ctx.java(java), f"-Xmx{heap}", f"-Xms{heap}" if not c1 else "-Xms64m",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", f"-Dcoinpulse.part={self.name}"]
        if c1:
            opts += ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        return opts

    @property
    def log4j2(self) -> str:
        return f"-Dlog4j2.configurationFile={self.ctx.conf_dir / 'log4j2.properties'}"


class Postgres(Part):
    name, stop_signal = "postgres", signal.SIGINT

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.pgdata = ctx.data / "postgres"
        self.socket = ctx.state / "pgsock"
        self.meta["socket"] = self.socket

    @property
    def port(self) -> int:
        return self.s.postgres_port

    def prepare(self) -> None:
        owner = _pg_owner()
        if not (self.pgdata / "PG_VERSION").is_file():
            self.ctx.progress("initialising PostgreSQL data directory")
            self.pgdata.mkdir(parents=True, exist_ok=True)
            _chown(self.pgdata, owner)
            os.chmod(self.pgdata, 0o700)
            _run_as(owner, [pg_bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "-E", "UTF8",
                            "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"],
                    self.ctx.log_dir / "postgres-init.log")
            with (self.pgdata / "postgresql.conf").open("a") as f:
                f.write(configs.postgres_conf(self.s, self.socket))
            (self.pgdata / "pg_hba.conf").write_text(configs.pg_hba())
        self.socket.mkdir(parents=True, exist_ok=True)
        _chown(self.socket, owner)
        os.chmod(self.socket, 0o700)

    def command(self):
        return _as_owner(_pg_owner(), [pg_bin("postgres"), "-D", str(self.pgdata)]), {}, self.pgdata

    def health(self):
        r = subprocess.run([pg_bin("pg_isready"), "-q", "-h", self.s.host, "-p", str(self.s.postgres_port)],
                           capture_output=True)
        v = self.pgdata / "PG_VERSION"
        return r.returncode == 0, (v.read_text().strip() if v.is_file() else "?")

    def after_healthy(self) -> None:
        from coinpulse_platform import bootstrap
        bootstrap.postgres(self.s, self.socket)


class Kafka(Part):
    name, stop_timeout = "kafka", 60.0

    @property
    def port(self) -> int:
        return self.s.kafka_port

    def prepare(self) -> None:
        ctx, kdata = self.ctx, self.ctx.data / "kafka"
        paths = ctx.paths()
        props = configs.kafka_server(self.s, ctx.conf_dir, kdata)
        configs.log4j2(ctx.conf_dir)
        if not (kdata / "meta.properties").is_file():
            cid_file = ctx.state / "kafka-cluster-id"
            if not cid_file.is_file():
                cid_file.write_text(kafka_cluster_id())
            ctx.progress("formatting the Kafka log directory (KRaft)")
            kdata.mkdir(parents=True, exist_ok=True)
            cmd = [ctx.java(), "-Xmx256m", self.log4j2, "-cp", f"{paths['kafka_lib']}/*", "kafka.tools.StorageTool",
                   "format", "-t", cid_file.read_text().strip(), "-c", str(props)]
            _checked(cmd, ctx.log_dir / "kafka-format.log")

    def command(self):
        ctx = self.ctx
        cmd = self.jvm(self.s.kafka_heap) + [
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", self.log4j2, f"-Dkafka.logs.dir={ctx.log_dir}",
            "-cp", f"{ctx.paths()['kafka_lib']}/*", "kafka.Kafka", str(ctx.conf_dir / "kafka.properties")]
        return cmd, {}, ctx.state

    def health(self):
        from confluent_kafka.admin import AdminClient
        try:
            md = AdminClient({"bootstrap.servers": self.s.bootstrap, "socket.timeout.ms": 1500,
                              "log_level": 0, "logger": _quiet}).list_topics(timeout=1.5)
            ok = len(md.brokers) > 0
        except Exception:  # noqa: BLE001 - any failure means not healthy yet
            ok = False
        return ok, artifacts.versions()["kafka"]


class S3(Part):
    name = "s3"

    @property
    def port(self) -> int:
        return self.s.s3_port

    def prepare(self) -> None:
        self.ctx.paths()
        configs.s3proxy(self.s, self.ctx.conf_dir, self.ctx.data / "s3")

    def command(self):
        cmd = self.jvm(self.s.s3_heap, c1=True) + [
            "-jar", str(self.ctx.paths()["s3proxy"]), "--properties", str(self.ctx.conf_dir / "s3proxy.conf")]
        return cmd, {}, self.ctx.state

    def health(self):
        r = _http_ok(f"{self.s.s3}/")
        return (r is not None and r.status_code in (200, 403)), artifacts.versions()["s3proxy"]

    def after_healthy(self) -> None:
        from coinpulse_platform import bootstrap
        bootstrap.s3_bucket(self.s)


class Registry(Part):
    """Apicurio Registry 3.3 (built for Java 21: class file 65), stored in PostgreSQL, with the ccompat API."""

    name, deps = "registry", ("postgres",)

    @property
    def port(self) -> int:
        return self.s.registry_port

    def prepare(self) -> None:
        self.ctx.paths()

    def command(self):
        s, apicurio = self.s, self.ctx.paths()["apicurio"]
        cmd = self.jvm(s.registry_heap, c1=True, java=21) + [
            f"-Dquarkus.http.host={s.host}", f"-Dquarkus.http.port={s.registry_port}",
            f"-Dquarkus.management.host={s.host}", f"-Dquarkus.management.port={s.registry_management_port}",
            "-Dquarkus.log.level=INFO", "-Dquarkus.banner.enabled=false", "-jar", str(apicurio / "quarkus-run.jar")]
        env = {
            "APICURIO_STORAGE_KIND": "sql",
            "APICURIO_STORAGE_SQL_KIND": "postgresql",
            "APICURIO_DATASOURCE_URL": f"jdbc:postgresql://{s.host}:{s.postgres_port}/apicurio",
            "APICURIO_DATASOURCE_USERNAME": "apicurio",
            "APICURIO_DATASOURCE_PASSWORD": s.pg_registry_password,
            "APICURIO_CCOMPAT_USE_CANONICAL_HASH": "true",
            # no deletes through its own API (a deleted schema turns records in flight into dead letters); the ccompat
            # API has no such switch in 3.3.3 (README, Security)
            "APICURIO_REST_DELETION_ARTIFACT_ENABLED": "false",
            "APICURIO_REST_DELETION_ARTIFACT_VERSION_ENABLED": "false",
            "APICURIO_REST_DELETION_GROUP_ENABLED": "false",
        }
        return cmd, env, apicurio

    def health(self):
        known = artifacts.versions()["registry"]
        r = _http_ok(f"http://{self.s.host}:{self.s.registry_port}/apis/registry/v3/system/info")
        if r is None or r.status_code != 200:
            return False, known
        try:
            return True, r.json().get("version", known)
        except ValueError:
            return False, known

    def after_healthy(self) -> None:
        from coinpulse_platform import bootstrap
        bootstrap.registry_config(self.s)


class Connect(Part):
    name, deps = "connect", ("kafka",)

    @property
    def port(self) -> int:
        return self.s.connect_port

    def prepare(self) -> None:
        configs.connect_worker(self.s, self.ctx.conf_dir, self.ctx.paths()["plugins"])
        configs.log4j2(self.ctx.conf_dir)

    def command(self):
        ctx = self.ctx
        cmd = self.jvm(self.s.connect_heap) + [
            self.log4j2, "-cp", f"{ctx.paths()['kafka_lib']}/*", "org.apache.kafka.connect.cli.ConnectDistributed",
            str(ctx.conf_dir / "connect.properties")]
        # the secrets connector configs name as `${env:...}` (coinpulse_sink.connectors.WORKER_RESOLVED)
        return cmd, {"COINPULSE_PG_WRITER_PASSWORD": self.s.pg_writer_password}, ctx.state

    def health(self):
        known = artifacts.versions()["connect"]
        r = _http_ok(f"{self.s.connect}/")
        if r is None or r.status_code != 200:
            return False, known
        r2 = _http_ok(f"{self.s.connect}/connectors")
        return (r2 is not None and r2.status_code == 200), r.json().get("version", known)


class Prefect(Part):
    name = "prefect"

    @property
    def port(self) -> int:
        return self.s.prefect_port

    def command(self):
        exe = Path(sys.executable).with_name("prefect")
        if not exe.is_file():
            raise RuntimeError("prefect is not installed in this environment; run `uv sync --all-packages`")
        s = self.s
        return [str(exe), "server", "start", "--host", s.host, "--port", str(s.prefect_port)], prefect_env(s), \
            self.ctx.state

    def health(self):
        base = f"http://{self.s.host}:{self.s.prefect_port}/api"
        r = _http_ok(f"{base}/health")
        if r is None or r.status_code != 200:
            return False, "?"
        v = _http_ok(f"{base}/admin/version", headers=self.s.prefect_headers())  # /health alone is open
        return True, (v.json() if v is not None and v.status_code == 200 else "?")


PARTS: tuple[type[Part], ...] = (Postgres, Kafka, S3, Prefect, Registry, Connect)
"""Every part, in the order `status` lists them; `down` stops them dependents first."""


# -------------------------------------------------------------------- helpers
class _Quiet:
    """librdkafka logs 'connection refused' while the broker starts; that is expected during health polling."""

    def log(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name):
        return self.log


_quiet = _Quiet()


def prefect_env(s: Settings) -> dict[str, str]:
    home = state_dir() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": s.prefect_api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": s.host,
        "PREFECT_SERVER_API_PORT": str(s.prefect_port),
        "PREFECT_UI_API_URL": s.prefect_api,
        # basic auth on the API and the UI (which asks for it); clients send the same string
        "PREFECT_SERVER_API_AUTH_STRING": s.prefect_auth(),
        "PREFECT_API_AUTH_STRING": s.prefect_auth(),
        "DO_NOT_TRACK": "1",
    }


def _java_version(java: Path) -> int:
    release = java.parent.parent / "release"
    if release.is_file():
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                v = line.split("=", 1)[1].strip('"')
                return int(v.split(".")[0])
    return 0


def _java_at_least(version: int) -> str:
    """A JDK of at least `version`: COINPULSE_JAVA21_HOME, JAVA_HOME, or the newest under /usr/lib/jvm."""
    candidates = [os.environ.get("COINPULSE_JAVA21_HOME"), os.environ.get("JAVA_HOME")]
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        candidates += [str(p) for p in sorted(jvm.iterdir())]
    best: tuple[int, str] | None = None
    for home in filter(None, candidates):
        java = Path(home, "bin", "java")
        if java.is_file():
            v = _java_version(java)
            if v >= version and (best is None or v > best[0]):
                best = (v, str(java))
    if best is None:
        raise RuntimeError(f"Apicurio Registry needs Java {version}+; install one (e.g. a Temurin JDK under "
                           f"/usr/lib/jvm) or point COINPULSE_JAVA21_HOME at it")
    return best[1]


def _pg_owner() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise RuntimeError("running as root needs a `postgres` OS user (Debian's postgresql package creates it)") from e
    return "postgres"


def _as_owner(owner: str | None, cmd: list[str]) -> list[str]:
    if owner is None:
        return cmd
    return ["setpriv", f"--reuid={owner}", f"--regid={owner}", "--init-groups", "--", *cmd]


def _chown(path: Path, owner: str | None) -> None:
    if owner is None:
        return
    pw = pwd.getpwnam(owner)
    # the owner must be able to reach the folder
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        if parent == path:
            os.chown(parent, pw.pw_uid, pw.pw_gid)
        else:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)


def _run_as(owner: str | None, cmd: list[str], log: Path) -> None:
    _checked(_as_owner(owner, cmd), log)


def kafka_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 that does not start with "-".

    Kafka's own `Uuid.randomUuid()` draws again on a leading "-" for the same reason: the storage tool's argument
    parser reads `-t -xyz…` as an unknown option and the format fails (1 run in 64 with a plain random id).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _checked(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.is_file() else 0
    with log.open("ab") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd="/")
    if rc != 0:
        with log.open("rb") as f:
            f.seek(start)
            tail = f.read().decode(errors="replace").strip().splitlines()[-5:]
        said = ("; it said: " + " | ".join(tail)) if tail else ""
        raise RuntimeError(f"`{' '.join(cmd[:3])} …` failed (exit {rc}); see {log}{said}")
