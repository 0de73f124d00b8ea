"""The native stack: its parts, how each starts and stops, and how each proves it is healthy.

Processes run detached (own session, output to `<state>/logs/<part>.log`), each with a pidfile in `<state>/run/`.
`up` starts parts in parallel as soon as their dependencies are healthy and waits on real health checks.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from coinpulse_common.paths import repo_root, state_dir
from coinpulse_common.proc import alive, stop_group
from coinpulse_common.settings import Settings, get_settings

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


def _http_ok(url: str, timeout: float = 1.5) -> httpx.Response | None:
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    return r


@dataclass
class Part:
    name: str
    port: int
    deps: tuple[str, ...] = ()
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    # filled by the stack
    command: Callable[[], tuple[list[str], dict[str, str], Path]] | None = None
    health: Callable[[], tuple[bool, str]] | None = None
    prepare: Callable[[], None] | None = None
    after_healthy: Callable[[], None] | None = None
    meta: dict = field(default_factory=dict)


class Stack:
    def __init__(self, settings: Settings | None = None, progress: Callable[[str], None] | None = None):
        self.s = settings or get_settings()
        self.state = state_dir()
        self.run_dir = self.state / "run"
        self.log_dir = self.state / "logs"
        self.conf_dir = self.state / "conf"
        self.data = self.state / "data"
        self.progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._paths: dict[str, Path] | None = None
        s = self.s
        self.parts: dict[str, Part] = {
            "postgres": Part("postgres", s.postgres_port, stop_signal=signal.SIGINT),
            "kafka": Part("kafka", s.kafka_port, stop_timeout=60),
            "s3": Part("s3", s.s3_port),
            "prefect": Part("prefect", s.prefect_port),
            "registry": Part("registry", s.registry_port, deps=("postgres",)),
            "connect": Part("connect", s.connect_port, deps=("kafka",)),
        }
        self._wire()

    # ---------------------------------------------------------------- paths, pids
    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        f = self.pidfile(name)
        if not f.is_file():
            return None
        try:
            pid = int(f.read_text().strip())
        except ValueError:
            return None
        return pid if alive(pid) else None

    def paths(self) -> dict[str, Path]:
        if self._paths is None:
            self._paths = artifacts.ensure(self.progress)
        return self._paths

    def java(self, min_version: int = 17) -> str:
        if min_version > 17:
            return _java_at_least(min_version)
        home = os.environ.get("JAVA_HOME")
        j = str(Path(home, "bin", "java")) if home else shutil.which("java")
        if not j:
            raise RuntimeError("Java 17+ not found; install it (Debian: apt-get install openjdk-17-jre-headless)")
        return j

    # ---------------------------------------------------------------- wiring
    def _wire(self) -> None:
        s, p = self.s, self.parts
        versions = artifacts.versions()

        # postgres ----------------------------------------------------------
        pgdata = self.data / "postgres"
        pgsock = self.state / "pgsock"

        def pg_prepare() -> None:
            owner = _pg_owner()
            if not (pgdata / "PG_VERSION").is_file():
                self.progress("initialising PostgreSQL data directory")
                pgdata.mkdir(parents=True, exist_ok=True)
                _chown(pgdata, owner)
                os.chmod(pgdata, 0o700)
                _run_as(owner, [pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "-E", "UTF8",
                                "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"],
                        self.log_dir / "postgres-init.log")
                with (pgdata / "postgresql.conf").open("a") as f:
                    f.write(configs.postgres_conf(s, pgsock))
                (pgdata / "pg_hba.conf").write_text(configs.pg_hba())
            pgsock.mkdir(parents=True, exist_ok=True)
            _chown(pgsock, owner)
            os.chmod(pgsock, 0o700)

        def pg_cmd():
            cmd = [pg_bin("postgres"), "-D", str(pgdata)]
            return _as_owner(_pg_owner(), cmd), {}, pgdata

        def pg_health():
            r = subprocess.run([pg_bin("pg_isready"), "-q", "-h", s.host, "-p", str(s.postgres_port)],
                               capture_output=True)
            ver = (pgdata / "PG_VERSION").read_text().strip() if (pgdata / "PG_VERSION").is_file() else "?"
            return r.returncode == 0, ver

        def pg_after():
            from coinpulse_platform import bootstrap
            bootstrap.postgres(s, pgsock)

        p["postgres"].prepare, p["postgres"].command, p["postgres"].health = pg_prepare, pg_cmd, pg_health
        p["postgres"].after_healthy = pg_after
        p["postgres"].meta["socket"] = pgsock

        # kafka -------------------------------------------------------------
        kdata = self.data / "kafka"

        def jvm_base(heap: str, name: str, c1: bool = False, java: int = 17) -> list[str]:
            opts = [self.java(java), f"-Xmx{heap}", f"-Xms{heap}" if not c1 else "-Xms64m",
                    "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", f"-Dcoinpulse.part={name}"]
            if c1:
                opts += ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
            return opts

        def kafka_prepare() -> None:
            paths = self.paths()
            props = configs.kafka_server(s, self.conf_dir, kdata)
            configs.log4j2(self.conf_dir)
            if not (kdata / "meta.properties").is_file():
                cid_file = self.state / "kafka-cluster-id"
                if not cid_file.is_file():
                    cid_file.write_text(kafka_cluster_id())
                self.progress("formatting the Kafka log directory (KRaft)")
                kdata.mkdir(parents=True, exist_ok=True)
                cmd = [self.java(), "-Xmx256m", f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
                       "-cp", f"{paths['kafka_lib']}/*", "kafka.tools.StorageTool", "format",
                       "-t", cid_file.read_text().strip(), "-c", str(props)]
                _checked(cmd, self.log_dir / "kafka-format.log")

        def kafka_cmd():
            paths = self.paths()
            cmd = jvm_base(s.kafka_heap, "kafka") + [
                "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.log_dir}",
                "-cp", f"{paths['kafka_lib']}/*", "kafka.Kafka", str(self.conf_dir / "kafka.properties")]
            return cmd, {}, self.state

        def kafka_health():
            from confluent_kafka.admin import AdminClient
            try:
                md = AdminClient({"bootstrap.servers": s.bootstrap, "socket.timeout.ms": 1500,
                                  "log_level": 0, "logger": _quiet}).list_topics(timeout=1.5)
                ok = len(md.brokers) > 0
            except Exception:  # noqa: BLE001 - any failure means not healthy yet
                ok = False
            return ok, versions["kafka"]

        p["kafka"].prepare, p["kafka"].command, p["kafka"].health = kafka_prepare, kafka_cmd, kafka_health

        # s3proxy -----------------------------------------------------------
        def s3_prepare() -> None:
            self.paths()
            configs.s3proxy(s, self.conf_dir, self.data / "s3")

        def s3_cmd():
            cmd = jvm_base(s.s3_heap, "s3", c1=True) + [
                "-jar", str(self.paths()["s3proxy"]), "--properties", str(self.conf_dir / "s3proxy.conf")]
            return cmd, {}, self.state

        def s3_health():
            r = _http_ok(f"{s.s3}/")
            return (r is not None and r.status_code in (200, 403)), versions["s3proxy"]

        def s3_after():
            from coinpulse_platform import bootstrap
            bootstrap.s3_bucket(s)

        p["s3"].prepare, p["s3"].command, p["s3"].health, p["s3"].after_healthy = s3_prepare, s3_cmd, s3_health, s3_after

        # apicurio registry -------------------------------------------------
        def reg_cmd():
            paths = self.paths()
            # Apicurio 3.3 is built for Java 21 (class file 65)
            cmd = jvm_base(s.registry_heap, "registry", c1=True, java=21) + [
                f"-Dquarkus.http.host={s.host}", f"-Dquarkus.http.port={s.registry_port}",
                f"-Dquarkus.management.host={s.host}", f"-Dquarkus.management.port={s.registry_management_port}",
                "-Dquarkus.log.level=INFO", "-Dquarkus.banner.enabled=false",
                "-jar", str(paths["apicurio"] / "quarkus-run.jar")]
            env = {
                "APICURIO_STORAGE_KIND": "sql",
                "APICURIO_STORAGE_SQL_KIND": "postgresql",
                "APICURIO_DATASOURCE_URL": f"jdbc:postgresql://{s.host}:{s.postgres_port}/apicurio",
                "APICURIO_DATASOURCE_USERNAME": "apicurio",
                "APICURIO_DATASOURCE_PASSWORD": s.pg_registry_password,
                "APICURIO_CCOMPAT_USE_CANONICAL_HASH": "true",
                "APICURIO_REST_DELETION_ARTIFACT_ENABLED": "true",
                "APICURIO_REST_DELETION_ARTIFACT_VERSION_ENABLED": "true",
                "APICURIO_REST_DELETION_GROUP_ENABLED": "true",
            }
            return cmd, env, paths["apicurio"]

        def reg_health():
            r = _http_ok(f"http://{s.host}:{s.registry_port}/apis/registry/v3/system/info")
            if r is None or r.status_code != 200:
                return False, versions["registry"]
            try:
                return True, r.json().get("version", versions["registry"])
            except ValueError:
                return False, versions["registry"]

        def reg_after():
            from coinpulse_platform import bootstrap
            bootstrap.registry_config(s)

        p["registry"].command, p["registry"].health, p["registry"].after_healthy = reg_cmd, reg_health, reg_after
        p["registry"].prepare = lambda: (self.paths(), None)[1]

        # connect -----------------------------------------------------------
        def connect_prepare() -> None:
            paths = self.paths()
            configs.connect_worker(s, self.conf_dir, paths["plugins"])
            configs.log4j2(self.conf_dir)

        def connect_cmd():
            paths = self.paths()
            cmd = jvm_base(s.connect_heap, "connect") + [
                f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.properties'}",
                "-cp", f"{paths['kafka_lib']}/*", "org.apache.kafka.connect.cli.ConnectDistributed",
                str(self.conf_dir / "connect.properties")]
            return cmd, {}, self.state

        def connect_health():
            r = _http_ok(f"{s.connect}/")
            if r is None or r.status_code != 200:
                return False, versions["connect"]
            r2 = _http_ok(f"{s.connect}/connectors")
            return (r2 is not None and r2.status_code == 200), r.json().get("version", versions["connect"])

        p["connect"].prepare, p["connect"].command, p["connect"].health = connect_prepare, connect_cmd, connect_health

        # prefect -----------------------------------------------------------
        def prefect_cmd():
            exe = Path(sys.executable).with_name("prefect")
            if not exe.is_file():
                raise RuntimeError("prefect is not installed in this environment; run `uv sync --all-packages`")
            env = prefect_env(s)
            return [str(exe), "server", "start", "--host", s.host, "--port", str(s.prefect_port)], env, self.state

        def prefect_health():
            r = _http_ok(f"http://{s.host}:{s.prefect_port}/api/health")
            if r is None or r.status_code != 200:
                return False, "?"
            v = _http_ok(f"http://{s.host}:{s.prefect_port}/api/admin/version")
            return True, (v.json() if v is not None and v.status_code == 200 else "?")

        p["prefect"].command, p["prefect"].health = prefect_cmd, prefect_health

    # ---------------------------------------------------------------- lifecycle
    def start_part(self, name: str) -> int:
        part = self.parts[name]
        pid = self.pid(name)
        if pid is not None:
            return pid
        if part.prepare:
            part.prepare()
        cmd, env, cwd = part.command()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        log.write(f"\n==== coinpulse: starting {name} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        log.flush()
        full_env = {**os.environ, **env}
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def healthy(self, name: str) -> tuple[bool, str]:
        try:
            return self.parts[name].health()
        except Exception as e:  # noqa: BLE001
            return False, f"error: {e}"

    def up(self, timeout: float | None = None, only: list[str] | None = None) -> dict[str, float]:
        """Start every part (or `only` and their dependencies); returns seconds to healthy per part."""
        timeout = timeout or self.s.start_timeout
        wanted = _with_deps(self.parts, only or list(self.parts))
        t0 = time.monotonic()
        self.paths()  # fetch artifacts once, before the parallel starts
        results: dict[str, float] = {}
        errors: dict[str, str] = {}
        events = {n: threading.Event() for n in wanted}

        def run(name: str) -> None:
            part = self.parts[name]
            try:
                for d in part.deps:
                    if not events[d].wait(timeout) or d in errors:
                        raise RuntimeError(f"dependency {d} did not become healthy")
                ok, _ = self.healthy(name)
                if not ok:
                    pid = self.start_part(name)
                    deadline = t0 + timeout
                    while True:
                        ok, _ = self.healthy(name)
                        if ok:
                            break
                        if not alive(pid):
                            raise RuntimeError(f"{name} exited during start-up; see {self.log_dir / (name + '.log')}")
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{name} not healthy after {timeout:.0f}s; "
                                               f"see {self.log_dir / (name + '.log')}")
                        time.sleep(0.25)
                if part.after_healthy:
                    part.after_healthy()
                results[name] = time.monotonic() - t0
                self.progress(f"{name:9s} healthy on {self.s.host}:{part.port} after {results[name]:.1f}s")
            except Exception as e:  # noqa: BLE001
                errors[name] = str(e)
            finally:
                events[name].set()

        threads = [threading.Thread(target=run, args=(n,), name=f"up-{n}") for n in wanted]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError("; ".join(f"{k}: {v}" for k, v in errors.items()))
        return results

    def stop_part(self, name: str) -> bool:
        part = self.parts[name]
        pid = self.pid(name)
        if pid is None:
            self.pidfile(name).unlink(missing_ok=True)
            return False
        stop_group(pid, part.stop_signal, part.stop_timeout,
                   on_timeout=lambda: self.progress(f"{name} did not stop in {part.stop_timeout:.0f}s; killing"))
        self.pidfile(name).unlink(missing_ok=True)
        return True

    def down(self, purge: bool = False) -> list[str]:
        from coinpulse_platform import services
        stopped = services.stop_all(self)
        # dependents first
        for name in ["connect", "registry", "prefect", "s3", "kafka", "postgres"]:
            if self.stop_part(name):
                stopped.append(name)
        if purge:
            for d in (self.data, self.conf_dir, self.run_dir, self.state / "kafka-cluster-id",
                      self.state / "pgsock", self.state / "prefect", self.state / "services"):
                if d.is_dir():
                    shutil.rmtree(d, ignore_errors=True)
                elif d.exists():
                    d.unlink()
        return stopped

    def status(self) -> dict[str, dict]:
        out = {}
        for name, part in self.parts.items():
            pid = self.pid(name)
            ok, ver = self.healthy(name)
            out[name] = {"healthy": ok, "host": self.s.host, "port": part.port, "version": ver, "pid": pid,
                         "running": pid is not None, "rss_mb": _tree_mem(pid, "VmRSS"),
                         "peak_rss_mb": _tree_mem(pid, "VmHWM")}
        return out


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


def _children(pid: int) -> list[int]:
    try:
        import psutil
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001
        return []


def _tree_mem(pid: int | None, field_name: str) -> float | None:
    if pid is None:
        return None
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def _with_deps(parts: dict[str, Part], names: list[str]) -> list[str]:
    out: list[str] = []

    def add(n: str) -> None:
        if n not in parts:
            raise KeyError(f"unknown part {n!r}; parts: {', '.join(parts)}")
        for d in parts[n].deps:
            add(d)
        if n not in out:
            out.append(n)

    for n in names:
        add(n)
    return out


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


def status_json(stack: Stack) -> str:
    return json.dumps(stack.status(), indent=2, default=str)


__all__ = ["Stack", "Part", "prefect_env", "repo_root"]
