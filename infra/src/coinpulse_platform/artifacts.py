"""JVM artifacts for the native stack, fetched from Maven Central with Maven and cached.

Layout under `<state>/jvm/`:
  kafka/lib/*.jar                      broker + Connect classpath (profile `kafka` of infra/jvm/pom.xml)
  plugins/apicurio-converter/*.jar     Connect plugin (profile `apicurio-converter`)
  plugins/debezium-connector-jdbc/...  Connect plugin (plugin tarball)
  apicurio/                            Apicurio Registry app (Quarkus fast-jar tarball)
  s3proxy/s3proxy.jar                  S3Proxy (jar-with-dependencies)
Each folder gets a `.complete` marker naming its coordinates, so the next start needs no network.
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


def _copy_deps(profile: str, out: Path, log: Path, stamp: str) -> None:
    if _done(out, stamp):
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _mvn([f"-P{profile}", f"{DEP_PLUGIN}:copy-dependencies", f"-DoutputDirectory={out}", "-DincludeScope=runtime"], log)
    _mark(out, stamp)


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
    v = versions()
    root = jvm_dir()
    root.mkdir(parents=True, exist_ok=True)
    log = state_dir() / "logs" / "fetch.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    tmp = root / ".download"

    kafka_lib = root / "kafka" / "lib"
    if not _done(kafka_lib, f"kafka {v['kafka']}"):
        progress(f"fetching Kafka {v['kafka']} (broker + Connect) from Maven Central")
    _copy_deps("kafka", kafka_lib, log, f"kafka {v['kafka']}")

    conv = root / "plugins" / "apicurio-converter"
    if not _done(conv, f"converter {v['converter']}"):
        progress(f"fetching the Apicurio Avro converter {v['converter']}")
    _copy_deps("apicurio-converter", conv, log, f"converter {v['converter']}")

    jdbc = root / "plugins" / "debezium-connector-jdbc"
    stamp = f"debezium {v['debezium']}"
    if not _done(jdbc, stamp):
        progress(f"fetching the Debezium JDBC sink {v['debezium']}")
        shutil.rmtree(jdbc, ignore_errors=True)
        jdbc.mkdir(parents=True)
        _extract(_copy_artifact(f"io.debezium:debezium-connector-jdbc:{v['debezium']}:tar.gz:plugin", tmp, log), jdbc)
        _mark(jdbc, stamp)

    apicurio = root / "apicurio"
    stamp = f"apicurio {v['registry']}"
    if not _done(apicurio, stamp):
        progress(f"fetching Apicurio Registry {v['registry']} (~160 MB, first start only)")
        shutil.rmtree(apicurio, ignore_errors=True)
        apicurio.mkdir(parents=True)
        _extract(_copy_artifact(f"io.apicurio:apicurio-registry-app:{v['registry']}:tar.gz:all", tmp, log), apicurio)
        _mark(apicurio, stamp)

    s3 = root / "s3proxy"
    stamp = f"s3proxy {v['s3proxy']}"
    if not _done(s3, stamp):
        progress(f"fetching S3Proxy {v['s3proxy']}")
        shutil.rmtree(s3, ignore_errors=True)
        s3.mkdir(parents=True)
        jar = _copy_artifact(f"org.gaul:s3proxy:{v['s3proxy']}:jar:jar-with-dependencies", tmp, log)
        shutil.copy2(jar, s3 / "s3proxy.jar")
        _mark(s3, stamp)

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
