"""Benchmark: coinpulse ingest-upbit vs cryptofeed (its Upbit feed + Kafka backend), same simulator, same run.

    uv run python bench/ingest_upbit.py [--frames 200000] [--latency-frames 15000] [--latency-rate 1000]

Both systems read the same recording (trades + 15-unit order books, 15 markets) from `coinpulse sim upbit` and write
to Kafka with acks=all and idempotence. Each system's process is pinned to one core (CPU 0), the simulator to CPU 1.

- throughput: the simulator replays as fast as the client takes it; frames/s and trades/s are counted in Kafka from
  the broker's LogAppendTime of the first and last record (coinpulse: one bronze record per frame in upbit.raw plus
  silver records; cryptofeed: one record per trade / book update);
- latency: the simulator sends 1,000 frames/s stamped with the send time; frame-to-Kafka latency is the broker's
  LogAppendTime minus that stamp for every trade record (same clock, same host).

cryptofeed is installed from PyPI into .coinpulse/bench-venvs/cryptofeed (never into the workspace).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from coinpulse_common.avro import registry_client, schema_text
from coinpulse_common.kafka import admin
from coinpulse_common.paths import repo_root, state_dir
from coinpulse_common.settings import get_settings
from coinpulse_sim_upbit.market import DEFAULT_MARKETS
from coinpulse_sim_upbit.recording import generate_recording
from coinpulse_testing.kafka import read_messages, topic_size
from coinpulse_testing.net import free_port, get_json
from coinpulse_testing.procs import spawn, spawn_python, stop
from coinpulse_testing.wait import wait_for
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema

ROOT = repo_root()
VENV = state_dir() / "bench-venvs" / "cryptofeed"
CRYPTOFEED = "cryptofeed==0.14.0"
MARKETS = [m[0] for m in DEFAULT_MARKETS]
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}


def ensure_cryptofeed() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(["uv", "venv", "-q", "-p", "3.11", str(VENV)], check=True)
    ok = subprocess.run([str(py), "-c", "import cryptofeed, aiokafka"], capture_output=True).returncode == 0
    if not ok:
        subprocess.run(["uv", "pip", "install", "-q", "--python", str(py), CRYPTOFEED, "aiokafka"], check=True)
    return py


def ensure_recording() -> Path:
    """Ten event-minutes, about 230,000 frames (generated once, deterministic)."""
    path = state_dir() / "bench" / "upbit-bench-v1.jsonl.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # ~400 frames per event-second: 20x the default trade rates, a 15-unit book per market per second, no tickers
        generate_recording(path, minutes=10, seed=11, fmt="SIMPLE", rate_scale=20,
                           ticker_interval_s=1e9, orderbook_interval_s=1.0)
    return path


def make_topics(settings, names: dict[str, str], register: bool) -> None:
    a = admin(settings)
    for f in a.create_topics([NewTopic(t, 3, 1, config=LOG_APPEND) for t in names.values()]).values():
        f.result(30)
    if register:
        reg = registry_client(settings.registry)
        for stem, topic in names.items():
            reg.register_schema(f"{topic}-value", Schema(schema_text(stem), "AVRO"))


def end_offsets(settings, topics: list[str]) -> int:
    return sum(topic_size(settings, t) for t in topics)


def read_times(settings, topic: str, value_ts=None) -> tuple[list[int], list[float]]:
    """Broker append times of every record (ms) and, with `value_ts`, append time minus the value's timestamp."""
    stamps = read_messages(settings, topic, timeout=120,
                           each=lambda m: (m.timestamp()[1], None if value_ts is None else value_ts(m.value())))
    times = [ts for ts, _ in stamps]
    return times, [ts - v for ts, v in stamps if v is not None]


def start_sim(port: int, recording: Path, extra: list[str], log: Path) -> subprocess.Popen:
    p = spawn_python(["-m", "coinpulse_sim_upbit", "--port", str(port), "--recording", str(recording), "--keep-times",
                      "--wait-clients", *extra], log, dict(os.environ, COINPULSE_LOG_LEVEL="WARNING"), cpu=1)
    wait_for(lambda: get_json(f"http://127.0.0.1:{port}/sim/stats", timeout=2), 60,
             f"the simulator on port {port} (log {log})", 0.2)
    return p


def sim_stats(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/sim/stats", timeout=5).json()


def start_system(system: str, port: int, topics: dict[str, str], log: Path, py: Path) -> subprocess.Popen:
    s = get_settings()
    if system == "coinpulse":
        env = dict(os.environ, COINPULSE_INGEST_UPBIT_WS_URL=f"ws://127.0.0.1:{port}/websocket/v1",
                   COINPULSE_INGEST_UPBIT_REST_URL=f"http://127.0.0.1:{port}", COINPULSE_INGEST_MARKETS=",".join(MARKETS),
                   COINPULSE_INGEST_METRICS_PORT=str(free_port()), COINPULSE_INGEST_TRADE_TOPIC=topics["trade"],
                   COINPULSE_INGEST_TICKER_TOPIC=topics["ticker"], COINPULSE_INGEST_ORDERBOOK_TOPIC=topics["orderbook"],
                   COINPULSE_INGEST_RAW_TOPIC=topics["raw_frame"], COINPULSE_INGEST_DLQ_TOPIC=topics["dead_letter"],
                   COINPULSE_LOG_LEVEL="WARNING",
                   # no initial history backfill: cryptofeed has none, and the replay's history is all on the socket
                   COINPULSE_INGEST_BACKFILL_INITIAL_S="0")
        cmd = [sys.executable, "-m", "coinpulse_ingest_upbit"]
    else:
        env = dict(os.environ)
        cmd = [str(py), str(ROOT / "bench" / "_cryptofeed_upbit.py"), f"ws://127.0.0.1:{port}/websocket/v1",
               f"http://127.0.0.1:{port}", s.bootstrap, topics["trade"], topics["book"], *MARKETS]
    return spawn(cmd, log, env, cpu=0)


def topics_for(system: str, prefix: str) -> dict[str, str]:
    if system == "coinpulse":
        return {"trade": f"{prefix}.upbit.trade", "ticker": f"{prefix}.upbit.ticker",
                "orderbook": f"{prefix}.upbit.orderbook", "raw_frame": f"{prefix}.upbit.raw",
                "dead_letter": f"{prefix}.dlq"}
    return {"trade": f"{prefix}.cf.trades", "book": f"{prefix}.cf.book"}


def frame_topics(system: str, topics: dict[str, str]) -> list[str]:
    return [topics["raw_frame"]] if system == "coinpulse" else [topics["trade"], topics["book"]]




def run_phase(system: str, recording: Path, frames: int, py: Path, workdir: Path, extra: list[str],
              latency: bool) -> dict:
    settings = get_settings()
    prefix = f"bench-{system}-{uuid.uuid4().hex[:6]}"
    topics = topics_for(system, prefix)
    make_topics(settings, topics, register=system == "coinpulse")
    port = free_port()
    sim = start_sim(port, recording, ["--speed", "0", "--limit", str(frames), *extra], workdir / f"sim-{prefix}.log")
    proc = start_system(system, port, topics, workdir / f"{prefix}.log", py)
    want = frames
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            st = sim_stats(port)
            if st["done"]:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{system} exited; see {workdir / f'{prefix}.log'}")
            time.sleep(0.5)
        sent = sim_stats(port)["frames_sent"]
        # wait for Kafka to hold every frame (or for the count to stop moving)
        last, still = -1, 0
        while time.monotonic() < deadline:
            n = end_offsets(settings, frame_topics(system, topics))
            if n >= want or (n == last and (still := still + 1) >= 10):
                break
            last = n if n != last else last
            still = still if n == last else 0
            time.sleep(0.5)
    finally:
        stop(proc, 60)
        stop(sim, 60)
    out: dict = {"system": system, "frames_sent": sent}
    times: list[int] = []
    for t in frame_topics(system, topics):
        times += read_times(settings, t)[0]
    out["frames_in_kafka"] = len(times)
    if system == "coinpulse":
        from coinpulse_ingest_upbit.avro import AvroEncoder

        enc = AvroEncoder(registry_client(settings.registry), topics["trade"], "trade")

        def ts(v):
            r = enc.decode(v)["trade_timestamp"]
            return r if isinstance(r, int) else int(r.timestamp() * 1000)
    else:
        def ts(v):
            return int(round(json.loads(v)["timestamp"] * 1000))
    ttimes, lat = read_times(settings, topics["trade"], ts if latency else None)
    out["trades_in_kafka"] = len(ttimes)
    span = (max(times) - min(times)) / 1000 if len(times) > 1 else float("nan")
    tspan = (max(ttimes) - min(ttimes)) / 1000 if len(ttimes) > 1 else float("nan")
    out["frames_per_s"] = len(times) / span if span else float("nan")
    out["trades_per_s"] = len(ttimes) / tspan if tspan else float("nan")
    if latency and lat:
        lat.sort()
        out["latency_ms_p50"] = lat[len(lat) // 2]
        out["latency_ms_p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        out["latency_ms_max"] = lat[-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200_000, help="frames replayed in the throughput phase")
    ap.add_argument("--latency-frames", type=int, default=15_000, help="frames in the latency phase")
    ap.add_argument("--latency-rate", type=float, default=1000.0, help="frames/s in the latency phase")
    ap.add_argument("--systems", default="coinpulse,cryptofeed", help="comma list")
    args = ap.parse_args()
    py = ensure_cryptofeed()
    recording = ensure_recording()
    workdir = state_dir() / "bench" / "logs"
    workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for system in args.systems.split(","):
        print(f"[{system}] throughput: {args.frames} frames at full speed ...", flush=True)
        thr = run_phase(system, recording, args.frames, py, workdir, [], latency=False)
        print(f"[{system}] latency: {args.latency_frames} frames at {args.latency_rate:.0f} frames/s ...", flush=True)
        lat = run_phase(system, recording, args.latency_frames, py, workdir,
                        ["--rate", str(args.latency_rate), "--restamp"], latency=True)
        results[system] = {"throughput": thr, "latency": lat}
    print()
    print(f"{'system':<12}{'frames/s':>12}{'trades/s':>12}{'frames in kafka':>18}{'p50 ms':>9}{'p99 ms':>9}")
    for system, r in results.items():
        t, lt = r["throughput"], r["latency"]
        print(f"{system:<12}{t['frames_per_s']:>12.0f}{t['trades_per_s']:>12.0f}"
              f"{t['frames_in_kafka']:>11}/{t['frames_sent']:<6}"
              f"{lt.get('latency_ms_p50', float('nan')):>9.1f}{lt.get('latency_ms_p99', float('nan')):>9.1f}")
    if "coinpulse" in results and "cryptofeed" in results:
        a, b = results["coinpulse"]["throughput"], results["cryptofeed"]["throughput"]
        print(f"ratio coinpulse/cryptofeed: frames/s {a['frames_per_s'] / b['frames_per_s']:.2f}x, "
              f"trades/s {a['trades_per_s'] / b['trades_per_s']:.2f}x")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"ingest_upbit-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
