"""Benchmark: coinpulse candle-agent (faust-streaming) vs a Quix Streams app, same topic, same run.

    uv run python bench/candle_agent.py [--trades 200000] [--live-seconds 150] [--live-rate 200]

1. Throughput. One pre-filled topic (3 partitions, 12 markets, 60 minutes of event time, 2 % duplicates, 5 %
   reordered within the grace) plus one far-future trade per partition so every minute can close. Each system
   starts on it pinned to one core (CPU 1; the reading side on CPU 0) and runs until the last expected candle is
   out. Reported: trades/s from process start to the last candle (start-up included) and in steady state (trades
   of the minutes that closed between the first and the last candle / that time). Both outputs are checked against
   reference.py (exact OHLC, counts, times; volumes within 1e-9 relative).
2. Emission delay. Both systems run side by side on a live topic fed at a realistic rate with wall-clock trade
   times; delay = time the candle is read − minute end (the 5 s grace included), p50/p99 per system.

Quix Streams comes from PyPI into .coinpulse/bench-venvs/quixstreams (never the workspace); bench/_quix_candles.py
is its app: tumbling window, reduce with in-window dedupe, `.final(closing_strategy="partition")`.
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

from coinpulse_candle_agent.trades import Trade
from coinpulse_common import topics
from coinpulse_common.avro import TopicCodec
from coinpulse_common.kafka import producer
from coinpulse_common.paths import repo_root, state_dir
from coinpulse_common.settings import get_settings
from coinpulse_testing import synthetic
from coinpulse_testing.net import free_port
from coinpulse_testing.procs import spawn, stop
from coinpulse_testing.reference import candle_diff, reference_candles
from coinpulse_testing.sandbox import TopicSet, start_agent
from confluent_kafka import Consumer, TopicPartition

ROOT = repo_root()
VENV = state_dir() / "bench-venvs" / "quixstreams"
QUIX = "quixstreams[avro]==3.28.1"
MARKETS = [f"KRW-C{i:02d}" for i in range(12)]
GRACE_MS = 5_000
WORK_CPU, READ_CPU = 1, 0


def ensure_quix() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(["uv", "venv", "-q", "-p", "3.11", str(VENV)], check=True)
    if subprocess.run([str(py), "-c", "import quixstreams"], capture_output=True).returncode != 0:
        subprocess.run(["uv", "pip", "install", "-q", "--python", str(py), QUIX], check=True)
    return py


def partition_of(market: str) -> int:
    return MARKETS.index(market) % 3 if market in MARKETS else int(market[-1])


def produce(s, topic: str, trades: list[Trade], received_at: int | None = None) -> None:
    codec = TopicCodec(topic, s, schema_topic=topics.UPBIT_TRADE)
    p = producer(s)
    for i, t in enumerate(trades):
        value = codec.encode(synthetic.trade_record(t, received_at))
        while True:
            try:
                p.produce(topic, key=t.market.encode(), value=value, partition=partition_of(t.market))
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    p.flush(60)


class Reader:
    """Reads a candle topic from the start, remembering when each key's latest value was read."""

    def __init__(self, s, topic: str, avro: bool):
        self.c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                           "enable.auto.commit": False})
        md = self.c.list_topics(topic, timeout=10).topics[topic]
        self.c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        self.codec = TopicCodec(topic, s, schema_topic=topics.CANDLE_1M) if avro else None
        self.last: dict[tuple[str, int], dict] = {}
        self.seen_at: dict[tuple[str, int], float] = {}

    def poll(self, seconds: float = 0.2) -> None:
        for m in self.c.consume(5000, seconds):
            if m.error() is not None:
                continue
            now = time.time()
            v = self.codec.decode(m.value()) if self.codec else json.loads(m.value())
            bs = v["bucket_start"]
            bs = bs if isinstance(bs, int) else int(round(bs.timestamp() * 1000))
            for f in ("first_trade_at", "last_trade_at"):
                if not isinstance(v[f], int):
                    v[f] = int(round(v[f].timestamp() * 1000))
            v["bucket_start"] = bs
            k = (v["market"], bs)
            self.last[k] = v
            self.seen_at.setdefault(k, now)

    def close(self) -> None:
        self.c.close()


def create_plain_topic(s, name: str, partitions: int = 3) -> None:
    from coinpulse_common.kafka import admin
    from confluent_kafka.admin import NewTopic

    client = admin(s)
    client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)


def start_quix(py: Path, s, topic: str, out: str, group: str, cpu: int, log: Path) -> subprocess.Popen:
    cmd = [str(py), str(ROOT / "bench" / "_quix_candles.py"), "--broker", s.bootstrap, "--registry", s.registry,
           "--input", topic, "--output", out, "--group", group, "--grace-ms", str(GRACE_MS),
           "--state-dir", str(state_dir() / "bench-quix-state" / group)]
    return spawn(cmd, log, cpu=cpu)


def run_until_complete(name: str, proc: subprocess.Popen, reader: Reader, want: dict, started: float,
                       timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not all(k in reader.last for k in want):
        reader.poll()
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: {sum(k in reader.last for k in want)}/{len(want)} candles after {timeout}s")
    done = max(reader.seen_at[k] for k in want)
    first = min(reader.seen_at[k] for k in want)
    diffs = {k: d for k in want if (d := candle_diff(reader.last[k], want[k]))}
    return {"first_candle_s": first - started, "last_candle_s": done - started, "bad_candles": len(diffs),
            "example_diff": next(iter(diffs.items()), None), "candles": len(want)}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trades", type=int, default=200_000)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--live-seconds", type=int, default=150)
    ap.add_argument("--live-rate", type=int, default=200, help="trades per second in the live phase")
    a = ap.parse_args()
    s = get_settings()
    py = ensure_quix()
    u = uuid.uuid4().hex[:8]
    logs = state_dir() / "logs" / "bench-candle"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict = {"trades": a.trades, "minutes": a.minutes, "markets": len(MARKETS), "grace_ms": GRACE_MS}

    # -- 1. throughput ----------------------------------------------------------------------------------------
    ts = TopicSet(f"bench-candle-{u}")
    ts.create(s)
    base = int(time.time() * 1000) // 3_600_000 * 3_600_000 - 24 * 3_600_000
    trades = synthetic.trades(MARKETS, base, a.minutes * 60_000, a.trades // len(MARKETS), seed=7)
    order = synthetic.arrival_order(trades, seed=8, dup_rate=0.02, delays=(1_000, 3_000), delay_rate=0.05)
    end = base + a.minutes * 60_000
    sentinels = [Trade(f"KRW-ZZZ{p}", 1, end + 600_000, 1.0, 1.0, True) for p in range(3)]
    print(f"producing {len(order)} trades (+{len(order) - len(trades)} duplicates) ...", flush=True)
    produce(s, ts.topic("trade"), order + sentinels)
    ref = reference_candles(trades, intervals=("1m",))
    want = {(m, b): c for (_, m, b), c in ref.items()}
    results["messages"] = len(order)

    os.sched_setaffinity(0, {READ_CPU})
    create_plain_topic(s, f"{ts.prefix}.quix.candle.1m")
    for name in ("coinpulse (faust)", "quix streams"):
        reader_topic = ts.topic("1m") if name.startswith("coinpulse") else f"{ts.prefix}.quix.candle.1m"
        started = time.time()
        if name.startswith("coinpulse"):
            env = ts.agent_env(f"bench-candle-{u}", free_port(), grace_ms=GRACE_MS, mentions="false",
                               batch_events=5000, batch_within_s=0.05)
            proc = start_agent(env, str(logs / f"faust-{u}.log"), cpu=WORK_CPU)
        else:
            proc = start_quix(py, s, ts.topic("trade"), reader_topic, f"bench-quix-{u}", WORK_CPU,
                              logs / f"quix-{u}.log")
        reader = Reader(s, reader_topic, avro=name.startswith("coinpulse"))
        try:
            r = run_until_complete(name, proc, reader, want, started, 900)
        finally:
            stop(proc)
            reader.close()
        # steady state: trades of the minutes whose candles appeared between the first and the last candle
        first_end = min(reader.seen_at.values())
        in_window = sum(want[k]["trade_count"] for k in want if reader.seen_at[k] > first_end)
        r["trades_per_s_end_to_end"] = len(order) / r["last_candle_s"]
        r["trades_per_s_steady"] = in_window / max(1e-9, r["last_candle_s"] - r["first_candle_s"])
        results[name] = r
        print(f"{name}: {r}", flush=True)

    # -- 2. emission delay at a realistic rate ---------------------------------------------------------------
    if a.live_seconds > 0:
        live = TopicSet(f"bench-live-{u}")
        live.create(s)
        env = live.agent_env(f"bench-live-{u}", free_port(), grace_ms=GRACE_MS, mentions="false")
        faust_p = start_agent(env, str(logs / f"faust-live-{u}.log"), cpu=WORK_CPU)
        quix_out = f"{live.prefix}.quix.candle.1m"
        create_plain_topic(s, quix_out)
        readers = {"coinpulse (faust)": Reader(s, live.topic("1m"), avro=True),
                   "quix streams": Reader(s, quix_out, avro=False)}
        quix_p = start_quix(py, s, live.topic("trade"), quix_out, f"bench-quix-live-{u}", READ_CPU,
                            logs / f"quix-live-{u}.log")
        t0 = time.time()
        codec = TopicCodec(live.topic("trade"), s, schema_topic=topics.UPBIT_TRADE)
        p = producer(s, **{"linger.ms": 1})
        seq = 0
        print(f"live phase: {a.live_rate} trades/s for {a.live_seconds}s ...", flush=True)
        next_t = time.monotonic()
        while time.time() - t0 < a.live_seconds:
            now = int(time.time() * 1000)
            for _ in range(max(1, a.live_rate // 50)):
                seq += 1
                m = MARKETS[seq % len(MARKETS)]
                t = Trade(m, seq, now, 100.0 + seq % 7, 0.5, seq % 2 == 0)
                p.produce(live.topic("trade"), key=m.encode(), value=codec.encode(synthetic.trade_record(t, now)),
                          partition=partition_of(m))
            p.poll(0)
            next_t += 0.02
            for rd in readers.values():  # read while feeding: read time = emission time + a few ms
                rd.poll(0)
            time.sleep(max(0.0, next_t - time.monotonic()))
        p.flush(10)
        # minute ends (m) when both apps were surely up, early enough for the candle to be out before the feed stopped
        minutes = [m for m in range((int(t0 * 1000) // 60_000 + 1) * 60_000, int(time.time() * 1000), 60_000)
                   if m >= t0 * 1000 + 20_000 and m + GRACE_MS + 1_000 < time.time() * 1000]
        for name, rd in readers.items():
            delays = [rd.seen_at[(mk, m - 60_000)] * 1000 - m for m in minutes for mk in MARKETS
                      if (mk, m - 60_000) in rd.seen_at]
            results.setdefault("live", {})[name] = (
                {"candles": len(delays), "expected": len(minutes) * len(MARKETS), "p50_ms": pct(delays, 0.5),
                 "p99_ms": pct(delays, 0.99)} if delays else {"candles": 0})
            rd.close()
        stop(faust_p)
        stop(quix_p)
        print(f"live: {results.get('live')}", flush=True)

    f, q = results["coinpulse (faust)"], results["quix streams"]
    results["ratio_end_to_end"] = f["trades_per_s_end_to_end"] / q["trades_per_s_end_to_end"]
    results["ratio_steady"] = f["trades_per_s_steady"] / q["trades_per_s_steady"]
    out = ROOT / "bench" / "results" / f"candle_agent-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\n{'system':<20}{'candles ok':>12}{'e2e trades/s':>15}{'steady trades/s':>18}")
    for name in ("coinpulse (faust)", "quix streams"):
        r = results[name]
        ok = f"{r['candles'] - r['bad_candles']}/{r['candles']}"
        print(f"{name:<20}{ok:>12}{r['trades_per_s_end_to_end']:>15,.0f}{r['trades_per_s_steady']:>18,.0f}")
    print(f"ratio coinpulse/quix: end-to-end {results['ratio_end_to_end']:.2f}, steady {results['ratio_steady']:.2f}")
    print(f"results: {out}")
    sys.exit(0 if f["bad_candles"] == 0 else 1)


if __name__ == "__main__":
    main()
