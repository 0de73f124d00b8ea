"""JVM artifacts for the native stack, fetched from Maven Central with Maven and cached.

Layout under `<state>/jvm/`:
  kafka/lib/*.jar                      broker + Connect classpath (profile `kafka` of infra/jvm/pom.xml)
  plugins/apicurio-converter/*.jar     Connect plugin (profile `apicurio-converter`)
  plugins/debezium-connector-jdbc/...  Connect plugin (plugin tarball)
  apicurio/                            Apicurio Registry app (Quarkus fast-jar tarball)
  s3proxy/s3proxy.jar                  S3Proxy (jar-with-dependencies)
Each folder gets a `.complete` marker naming its coordinates, so the next start needs no network. A fetch holds an
exclusive lock on `<jvm>/.fetch.lock`: two stacks started at once on a fresh machine (the two `make test` sessions,
which share the folder) fetch once, the second waiting for the first, instead of racing over the same files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from coinpulse_common.paths import repo_root, state_dir
from coinpulse_common.proc import exclusive

POM = "infra/jvm/pom.xml"
MVN_SETTINGS = "infra/jvm/settings.xml"
DEP_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def _props() -> dict[str, str]:
    text = (repo_root() / POM).read_text()
    return dict(re.findall(r"<([a-z0-9.]+\.version)>([^<]+)</", text))


def versions() -> dict[str, str]:
    p = _props()
    return {
        "kafka": p["kafka.version"],
        "connect": p["kafka.version"],
        "registry": p["apicurio.version"],
        "converter": p["apicurio.converter.version"],
        "debezium": p["debezium.version"],
        "s3proxy": p["s3proxy.version"],
    }


def jvm_dir() -> Path:
    """COINPULSE_JVM_DIR, else `<state>/jvm` (a second stack, e.g. in tests, may share the first one's artifacts)."""
    env = os.environ.get("COINPULSE_JVM_DIR")
    return Path(env) if env else state_dir() / "jvm"


def _mvn(args: list[str], log: Path) -> None:
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (`mvn`) is not installed; install it (Debian: apt-get install maven) and rerun")
    cmd = ["mvn", "-B", "-q", "-s", str(repo_root() / MVN_SETTINGS), "-f", str(repo_root() / POM), *args]
    with log.open("ab") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise RuntimeError(f"Maven failed ({' '.join(args[:2])}); see {log}. Check network access to Maven Central.")


def _done(folder: Path, stamp: str) -> bool:
    marker = folder / ".complete"
    return marker.is_file() and marker.read_text() == stamp


def _mark(folder: Path, stamp: str) -> None:
    (folder / ".complete").write_text(stamp)


def _fill_once(folder: Path, stamp: str, message: str, progress: Callable[[str], None],
               fill: Callable[[Path], None]) -> None:
    """Unless `folder` is marked complete for `stamp`: say `message`, empty the folder, fill(folder), then mark it.

    The marker is written last, so an interrupted fetch leaves no marker and the next start redoes that folder.
    """
    if _done(folder, stamp):
        return
    progress(message)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    fill(folder)
    _mark(folder, stamp)


def _copy_deps(profile: str, out: Path, log: Path) -> None:
    _mvn([f"-P{profile}", f"{DEP_PLUGIN}:copy-dependencies", f"-DoutputDirectory={out}", "-DincludeScope=runtime"], log)


def _copy_artifact(coord: str, tmp: Path, log: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    _mvn([f"{DEP_PLUGIN}:copy", f"-Dartifact={coord}", f"-DoutputDirectory={tmp}"], log)
    g, a, v, typ, *cls = coord.split(":")
    name = f"{a}-{v}" + (f"-{cls[0]}" if cls else "") + f".{typ}"
    return tmp / name


def _extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")


def ensure(progress: Callable[[str], None] = print) -> dict[str, Path]:
    """Fetch (first time) or reuse every JVM artifact; returns the paths the parts run from."""
    root = jvm_dir()
    root.mkdir(parents=True, exist_ok=True)
    with exclusive(root / ".fetch.lock", progress,
                   f"another process is fetching the JVM artifacts into {root}; waiting for it to finish"):
        return _ensure(root, progress)


def _ensure(root: Path, progress: Callable[[str], None]) -> dict[str, Path]:
    v = versions()
    log = state_dir() / "logs" / "fetch.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    tmp = root / ".download"

    kafka_lib = root / "kafka" / "lib"
    _fill_once(kafka_lib, f"kafka {v['kafka']}", f"fetching Kafka {v['kafka']} (broker + Connect) from Maven Central",
               progress, lambda d: _copy_deps("kafka", d, log))
    _fill_once(root / "plugins" / "apicurio-converter", f"converter {v['converter']}",
               f"fetching the Apicurio Avro converter {v['converter']}", progress,
               lambda d: _copy_deps("apicurio-converter", d, log))

    def unpack(coord: str) -> Callable[[Path], None]:
        return lambda d: _extract(_copy_artifact(coord, tmp, log), d)

    _fill_once(root / "plugins" / "debezium-connector-jdbc", f"debezium {v['debezium']}",
               f"fetching the Debezium JDBC sink {v['debezium']}", progress,
               unpack(f"io.debezium:debezium-connector-jdbc:{v['debezium']}:tar.gz:plugin"))
    apicurio = root / "apicurio"
    _fill_once(apicurio, f"apicurio {v['registry']}",
               f"fetching Apicurio Registry {v['registry']} (~160 MB, first start only)", progress,
               unpack(f"io.apicurio:apicurio-registry-app:{v['registry']}:tar.gz:all"))
    s3 = root / "s3proxy"
    s3proxy_jar = f"org.gaul:s3proxy:{v['s3proxy']}:jar:jar-with-dependencies"
    _fill_once(s3, f"s3proxy {v['s3proxy']}", f"fetching S3Proxy {v['s3proxy']}", progress,
               lambda d: shutil.copy2(_copy_artifact(s3proxy_jar, tmp, log), d / "s3proxy.jar"))

    shutil.rmtree(tmp, ignore_errors=True)
    quarkus = next(apicurio.rglob("quarkus-run.jar"), None)
    if quarkus is None:
        raise RuntimeError(f"no quarkus-run.jar under {apicurio}; delete that folder and rerun `coinpulse up`")
    return {
        "kafka_lib": kafka_lib,
        "plugins": root / "plugins",
        "apicurio": quarkus.parent,
        "s3proxy": s3 / "s3proxy.jar",
    }
