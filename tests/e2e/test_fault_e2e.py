"""The whole pipeline under faults, on an isolated second stack (own state folder, every port shifted by 2000).

While the Upbit simulator generates a seeded few-minute feed for three markets (duplicates, reordering, malformed
frames, a forced WebSocket disconnect every few seconds) and the gallery site serves a seeded community that grows
during the run, we kill -9 and restart in turn: the broker, the schema registry and Connect (each followed by
`coinpulse up`), the candle agent, the ingester and the crawler. At the end (feed done, event time past the last
minute + grace through the agent's idle timer):

- gold.candles (interval 1m) in PostgreSQL equals the reference over the simulator's unique trade history, minute by
  minute for all markets (OHLC, counts and timestamps exact, volumes within 1e-9 relative);
- gold.mentions_1m equals a reference computed from the site's content (/sim/state) with the agent's matcher;
- every post of the site is in silver.posts exactly once, every comment in silver.comments exactly once;
- Connect dead-lettered nothing (with a 30 s schema refresh it used to dead-letter the good records that needed a
  refresh while the registry was down, and a whole minute of candles went missing);
- every malformed frame the simulator sent is in dlq.ingest-upbit;
- every malformed page the site served (view pages without their header, comment answers cut off, requested after
  the crawler's restart so none dies with a killed process) is a committed record of dlq.crawl-dc, and the crawler
  fetched those posts again, so the community in PostgreSQL is still complete.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from coinpulse_common import topics
from coinpulse_common.settings import Settings
from coinpulse_mentions import default_matcher, doc_hits
from coinpulse_platform.isolated import cli
from coinpulse_sink.rewind import CONVERTER_STAGES, RewindLedger, replay_key
from coinpulse_testing.kafka import read_messages, read_values, topic_size
from coinpulse_testing.net import get_json as get
from coinpulse_testing.procs import Procs, kill9_pid
from coinpulse_testing.reference import candle_diff, reference_candles, sim_trades
from coinpulse_testing.stacks import isolated_stack_fixture, part_pid, settings_of
from coinpulse_testing.wait import wait_for
from confluent_kafka import Consumer, TopicPartition

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.own_stack, pytest.mark.timeout(1800)]  # ~5 min idle; 2 cores at load 10+ need far more

OFFSET = 2000
MARKETS = "KRW-BTC,KRW-ETH,KRW-XRP"
GALLERY = "bitcoins_new1"
GRACE_MS = 2000  # the agent's candle grace
FEED_S = 1200  # an upper bound: the test ends the feed (POST /sim/finish) once the faults are done


env = isolated_stack_fixture(OFFSET, folder="stack-fault")


def pg_rows(env, sql: str) -> list[tuple]:
    dsn = (f"postgresql://coinpulse:{Settings().pg_superuser_password}@127.0.0.1:{env['COINPULSE_POSTGRES_PORT']}"
           "/coinpulse")
    try:
        with psycopg.connect(dsn, connect_timeout=5) as c:
            return c.execute(sql).fetchall()
    except psycopg.Error:
        return []


def ms(v) -> int:
    return v if isinstance(v, int) else int(round(v.timestamp() * 1000))


def where_missing(env, bad: dict[tuple[str, int], list[str]], want: dict) -> str:
    """Which stage lost the candles missing from PostgreSQL: are they in candle.1m (then the sink), or not (the
    agent)? For the failure message only."""
    missing = {topics.gold_key(m, b).encode() for (m, b), d in bad.items() if d == ["missing"]}
    if not missing:
        return "none missing"
    in_topic = {m.key() for m in read_messages(settings_of(env), topics.CANDLE_1M, timeout=30)} & missing
    return (f"{len(in_topic)} of the {len(missing)} missing candles are in {topics.CANDLE_1M} (the rest never left "
            f"the agent); {trade_trail(env, [k for k, d in bad.items() if d == ['missing']], want)}")


def trade_trail(env, keys: list[tuple[str, int]], want: dict) -> str:
    """Where the trades of the missing candles are: in the reference, in upbit.trade (did the agent get them at all?),
    in candle.late (did the agent call them late?), in silver.trades. For the failure message only."""
    def bucket_of(v: dict) -> tuple[str, int]:
        return v["market"], v["trade_timestamp"] - v["trade_timestamp"] % 60_000

    s = settings_of(env)
    out = []
    try:
        topic_trades = [bucket_of(v) for v in read_values(s, topics.UPBIT_TRADE, timeout=30)]
        late = [bucket_of(v) for v in read_values(s, topics.CANDLE_LATE, timeout=30)]
    except Exception as exc:  # noqa: BLE001 - diagnosis only
        return f"trade trail unavailable: {exc!r}"
    for market, start in keys[:4]:
        silver = pg_rows(env, f"SELECT count(*) FROM silver.trades WHERE market = '{market}' AND trade_timestamp >= "
                              f"to_timestamp({start / 1000}) AND trade_timestamp < to_timestamp({(start + 60_000) / 1000})")
        out.append(f"{market}@{start}: reference {want[(market, start)]['trade_count']}, in {topics.UPBIT_TRADE} "
                   f"{topic_trades.count((market, start))}, in {topics.CANDLE_LATE} {late.count((market, start))}, "
                   f"in silver.trades {silver[0][0] if silver else '?'}")
    return "trades of the missing candles: " + "; ".join(out)


def agent_state(env, tmp_path) -> str:
    """The candle agent's view of its inputs (/health) for a failure message; its task stacks go to a file."""
    base = f"http://127.0.0.1:{env['COINPULSE_CANDLE_METRICS_PORT']}"
    try:
        body = httpx.get(base + "/health", timeout=10).json()
        (tmp_path / "candle-agent-tasks.txt").write_text(httpx.get(base + "/debug/tasks", timeout=10).text)
    except (httpx.HTTPError, ValueError) as exc:
        return f"agent /health: {exc!r}"
    return (f"agent ok {body.get('ok')} ({body.get('reason')}), rebalancing {body.get('rebalancing')}, recovered "
            f"{body.get('recovered')}, inputs {body.get('inputs')}, fetch {body.get('fetch')}, busy {body.get('busy')}, counts {body.get('counts')}; "
            f"task stacks in {tmp_path / 'candle-agent-tasks.txt'}")


def candles_in_pg(env, interval: str = "1m") -> dict[tuple[str, int], dict]:
    cols = ("market", "interval", "bucket_start", "open", "high", "low", "close", "volume", "quote_volume", "vwap",
            "trade_count", "buy_volume", "sell_volume", "first_trade_at", "last_trade_at")
    rows = pg_rows(env, f"SELECT {', '.join(cols)} FROM gold.candles WHERE interval = '{interval}'")
    out = {}
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        for f in ("bucket_start", "first_trade_at", "last_trade_at"):
            d[f] = ms(d[f])
        for f in ("open", "high", "low", "close", "volume", "quote_volume", "vwap", "buy_volume", "sell_volume"):
            d[f] = float(d[f])
        out[(d["market"], d["bucket_start"])] = d
    return out


def mention_reference(site: dict) -> dict[tuple[str, int], tuple]:
    """(market, minute) -> (mentions, posts, comments, positive, negative) over the site's live content."""
    m = default_matcher()
    docs: dict[tuple[str, int], dict[str, tuple]] = defaultdict(dict)
    for p in site[GALLERY]["posts"]:
        if p["deleted"]:
            continue
        text = p["title"] + ("\n" + p["body"] if p["body"] else "")
        for h in doc_hits(m, f"p:{GALLERY}/{p['post_no']}", p["created_at_ms"], text, True):
            docs[(h.market, h.ts - h.ts % 60_000)][h.doc] = (h.mentions, h.positive, h.negative)
        for c in p["comments"]:
            if c["deleted"]:
                continue
            doc = f"c:{GALLERY}/{p['post_no']}/{c['comment_no']}"
            for h in doc_hits(m, doc, c["created_at_ms"], c["text"] or "", True):
                docs[(h.market, h.ts - h.ts % 60_000)][h.doc] = (h.mentions, h.positive, h.negative)
    out = {}
    for key, d in docs.items():
        posts = sum(1 for k in d if k.startswith("p:"))
        out[key] = (sum(x[0] for x in d.values()), posts, len(d) - posts, sum(x[1] for x in d.values()),
                    sum(x[2] for x in d.values()))
    return out


def mentions_in_pg(env) -> dict[tuple[str, int], tuple]:
    rows = pg_rows(env, "SELECT market, bucket_start, mentions, posts, comments, positive, negative "
                        "FROM gold.mentions_1m")
    return {(r[0], ms(r[1])): tuple(r[2:]) for r in rows}


def dlq_count(env, topic: str) -> int:
    return topic_size(settings_of(env), topic)


def connect_dead_letters(env, n: int = 3) -> str:
    """How many records Connect dead-lettered, with the source topic and error of the first n (all our topics carry
    valid records, so any is a good record that did not become a row)."""
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{env['COINPULSE_KAFKA_PORT']}", "group.id": "fault-e2e-dlq",
                  "enable.auto.commit": False})
    try:
        tp = TopicPartition("dlq.connect", 0, 0)
        total = c.get_watermark_offsets(tp, timeout=10)[1]
        c.assign([tp])
        first = []
        while len(first) < min(n, total) and (m := c.poll(5)) is not None:
            if not m.error():
                h = {k: (v or b"").decode(errors="replace")[:600] for k, v in m.headers() or []}
                first.append((h.get("__connect.errors.topic"), h.get("__connect.errors.exception.class.name"),
                              h.get("__connect.errors.exception.message"),
                              h.get("__connect.errors.exception.stacktrace")))
        return f"{total} dead letters in dlq.connect {first}"
    finally:
        c.close()


def unreplayed_dead_letters(env) -> list[str]:
    """The dead letters in dlq.connect that the sink's rewinder has not replayed (its ledger), or that are not a
    converter's (a sink-stage failure is a bad record, which our topics do not carry)."""
    bootstrap = f"127.0.0.1:{env['COINPULSE_KAFKA_PORT']}"
    replayed = RewindLedger(bootstrap, "coinpulse-sink-rewound").load()
    out = []
    for m in read_messages(settings_of(env), "dlq.connect", complete=True):
        h = {k: (v or b"").decode(errors="replace") for k, v in m.headers() or []}
        key = replay_key(h.get("__connect.errors.connector.name", ""), h.get("__connect.errors.topic", ""),
                         int(h.get("__connect.errors.partition", -1)), int(h.get("__connect.errors.offset", -1)))
        if h.get("__connect.errors.stage") not in CONVERTER_STAGES or key not in replayed:
            out.append(f"{key} ({h.get('__connect.errors.stage')})")
    return out


def committed_count(env, topic: str) -> int:
    """Records a read_committed consumer sees (a transactional producer's aborted records and markers excluded)."""
    return len(read_messages(settings_of(env), topic, timeout=30, complete=True))


def test_pipeline_under_faults_equals_reference(env, tmp_path):
    t0 = time.monotonic()
    procs = Procs(env, tmp_path)
    up_url = f"http://127.0.0.1:{env['COINPULSE_SIM_UPBIT_PORT']}"
    dc_url = f"http://127.0.0.1:{env['COINPULSE_SIM_DCINSIDE_PORT']}"
    start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    try:
        procs.start("sim-dcinside", ["-m", "coinpulse_sim_dcinside", "--port", env["COINPULSE_SIM_DCINSIDE_PORT"],
                                     "--seed", "13", "--galleries", f"{GALLERY}:normal", "--start", start,
                                     "--initial-posts", "40", "--initial-comments", "120", "--comments-per-page", "20",
                                     "--posts-per-minute", "0", "--comments-per-minute", "0"])
        procs.start("sink", ["-m", "coinpulse_sink", "run"])
        procs.start("sim-upbit", ["-m", "coinpulse_sim_upbit", "--port", env["COINPULSE_SIM_UPBIT_PORT"], "--seed", "3",
                                  "--markets", MARKETS, "--duration", str(FEED_S), "--wait-clients",
                                  "--disconnect-every", "15", "--duplicate-rate", "0.03", "--reorder-window", "3",
                                  "--malformed-rate", "0.02"])
        wait_for(lambda: get(up_url + "/sim/stats") and get(dc_url + "/sim/state"), 120, "the simulators")
        # the sink creates the tables and applies the connectors before anything is produced into them
        wait_for(lambda: pg_rows(env, "SELECT count(*) FROM gold.candles"), 120,
                 "the sink's migrations: " + procs.tail("sink"))
        procs.start("candle-agent", ["-m", "coinpulse_candle_agent"], {
            "COINPULSE_CANDLE_GRACE_MS": str(GRACE_MS), "COINPULSE_CANDLE_MENTION_GRACE_MS": "2000",
            "COINPULSE_CANDLE_MENTION_LATENESS_MS": str(24 * 3_600_000), "COINPULSE_CANDLE_IDLE_AFTER_MS": "1500"})
        procs.start("ingest-upbit", ["-m", "coinpulse_ingest_upbit"], {
            "COINPULSE_INGEST_UPBIT_WS_URL": f"ws://127.0.0.1:{env['COINPULSE_SIM_UPBIT_PORT']}/websocket/v1",
            "COINPULSE_INGEST_UPBIT_REST_URL": up_url, "COINPULSE_INGEST_MARKETS": MARKETS, "COINPULSE_INGEST_RECONNECT_BASE_S": "0.3"})
        procs.start("crawl-dc", ["-m", "coinpulse_crawl_dc"], {
            "COINPULSE_DC_BASE_URL": dc_url, "COINPULSE_DC_GALLERIES": f"{GALLERY}:normal",
            "COINPULSE_DC_INTERVAL_S": "10", "COINPULSE_DC_DOWNLOAD_DELAY_S": "0", "COINPULSE_DC_BACKOFF_BASE_S": "0.1",
            "COINPULSE_DC_LIST_PAGE_ROWS": "100", "COINPULSE_DC_BACKFILL_PAGES": "2"})

        def trades() -> int:
            return (get(up_url + "/sim/stats") or {}).get("trades", 0)

        def progress(what: str, n: int = 20) -> None:
            """Wait until the feed has moved on by n trades (and the services we run are alive)."""
            before = trades()
            wait_for(lambda: trades() >= before + n, 60, f"feed progress before {what}")
            for name in procs.procs:
                assert procs.alive(name), f"{name} died: {procs.tail(name)}"

        wait_for(lambda: (pg_rows(env, "SELECT count(*) FROM silver.trades") or [(0,)])[0][0] > 0, 120,
                 "first trades in PostgreSQL: " + procs.tail("ingest-upbit"))
        for part in ("kafka", "registry", "connect"):  # the stack's parts, then `coinpulse up`
            progress(part)
            kill9_pid(part_pid(env, part))
            r = cli(env, "up")
            assert r.returncode == 0, r.stdout + r.stderr
        httpx.post(dc_url + "/sim/advance", json={"posts": 6, "comments": 25}, timeout=10)
        for name in ("candle-agent", "ingest-upbit", "crawl-dc"):  # our services, restarted at once
            progress(name)
            procs.kill9_and_restart(name)
        # malformed pages: the next view pages lose their header, the next comment answers are cut off
        httpx.post(dc_url + "/sim/control", json={"malformed": {"view": 2, "comment": 2}}, timeout=10)
        httpx.post(dc_url + "/sim/advance", json={"posts": 4, "comments": 15}, timeout=10)
        faults_done = time.monotonic() - t0
        progress("the end of the feed", 200)  # trades after the last restart, then the feed ends
        httpx.post(up_url + "/sim/finish", timeout=10)

        stats = wait_for(lambda: (s := get(up_url + "/sim/stats")) and s.get("done") and s, 60,
                         "the end of the feed")
        assert stats["disconnects_forced"] >= 3 and stats["duplicates_sent"] > 0 and stats["malformed_sent"] > 0

        # candles: the reference over the simulator's unique trade history
        history = get(up_url + "/sim/trades")["trades"]
        unique = sim_trades(history)
        want = {(m, b): c for (_, m, b), c in reference_candles(unique, intervals=("1m",)).items()}
        assert len(want) >= 3 * 2

        def candle_diffs():
            got = candles_in_pg(env)
            bad = {k: (candle_diff(got[k], w) if k in got else ["missing"]) for k, w in want.items()}
            bad = {k: v for k, v in bad.items() if v}
            extra = set(got) - set(want)
            return bad, extra

        deadline = time.monotonic() + 120
        while (diffs := candle_diffs()) != ({}, set()):
            assert time.monotonic() < deadline, (
                f"{procs.tail('candle-agent', 1500)}\n"  # the diagnosis last: CI shows the end of a long message
                f"{len(diffs[0])}/{len(want)} candles differ, extra {sorted(diffs[1])[:3]}: "
                f"{list(diffs[0].items())[:3]}; {where_missing(env, diffs[0], want)}; {agent_state(env, tmp_path)}")
            time.sleep(1)

        # 5-minute candles (the agent's rollups of its minutes): each one the last trades closed equals the reference
        # (a rollup first closed while the registry was down used to be marked emitted and never sent)
        last_ts = max(t.ts for t in unique)
        want5 = {(m, b): c for (_, m, b), c in reference_candles(unique, intervals=("5m",)).items()
                 if b + 300_000 + GRACE_MS <= last_ts}

        def diffs_5m() -> dict:
            got = candles_in_pg(env, "5m")
            return {k: d for k, w in want5.items() if (d := candle_diff(got[k], w) if k in got else ["missing"])}

        wait_for(lambda: not diffs_5m(), 60, lambda: (f"5-minute candles equal to the reference: "
                                                      f"{list(diffs_5m().items())[:3]}; {agent_state(env, tmp_path)}"))
        candles_5m = len(want5)

        # community: the site after the crawler has caught up; mentions equal the matcher over it
        site = get(dc_url + "/sim/state")["galleries"]
        posts = {p["post_no"] for p in site[GALLERY]["posts"]}
        comments = {(p["post_no"], c["comment_no"]) for p in site[GALLERY]["posts"] for c in p["comments"]}

        def posts_in_pg():
            rows = pg_rows(env, f"SELECT post_no FROM silver.posts WHERE gallery = '{GALLERY}'")
            crows = pg_rows(env, f"SELECT post_no, comment_no FROM silver.comments WHERE gallery = '{GALLERY}'")
            return [r[0] for r in rows], [tuple(r) for r in crows]

        def community_done():
            p, c = posts_in_pg()
            return sorted(p) == sorted(posts) and sorted(c) == sorted(comments)

        deadline = time.monotonic() + 90
        while not community_done():
            p, c = posts_in_pg()
            assert time.monotonic() < deadline, (
                f"posts {len(p)}/{len(posts)} (distinct {len(set(p))}), comments {len(c)}/{len(comments)}: "
                f"{procs.tail('crawl-dc')}")
            time.sleep(1)

        want_mentions = mention_reference(site)
        assert len(want_mentions) >= 5
        deadline = time.monotonic() + 60
        while (got_m := mentions_in_pg(env)) != want_mentions:
            missing = {k: v for k, v in want_mentions.items() if got_m.get(k) != v}
            assert time.monotonic() < deadline, (
                f"{len(missing)}/{len(want_mentions)} mention buckets differ, extra "
                f"{sorted(set(got_m) - set(want_mentions))[:3]}: "
                f"{[(k, v, got_m.get(k)) for k, v in list(missing.items())[:3]]}; {connect_dead_letters(env)}; "
                f"{agent_state(env, tmp_path)}")
            time.sleep(1)

        # Connect dead-letters a good record when the registry is down as its converter meets it (a restarted
        # Connect's schema cache is empty): the sink's rewinder replays each such record once. So no dead letter
        # may stay one: each is a converter failure in the rewinder's ledger of replays (the rows above, equal to
        # the reference, show each replay became its row once)
        wait_for(lambda: not unreplayed_dead_letters(env), 120,
                 lambda: (f"every dead letter in dlq.connect replayed by the sink's rewinder; not replayed: "
                          f"{unreplayed_dead_letters(env)[:3]}; {connect_dead_letters(env)}"), every=2)
        # every malformed frame the simulator sent is a dead letter of the ingester
        malformed = get(up_url + "/sim/stats")["malformed_sent"]
        wait_for(lambda: dlq_count(env, "dlq.ingest-upbit") >= malformed, 120,
                 f"{malformed} dead letters in dlq.ingest-upbit")
        assert dlq_count(env, "dlq.ingest-upbit") == malformed
        # every malformed page the site served is a committed dead letter of the crawler
        served = get(dc_url + "/sim/state")["requests"]
        bad_pages = served.get("malformed_view", 0) + served.get("malformed_comment", 0)
        assert served.get("malformed_view", 0) >= 1
        wait_for(lambda: committed_count(env, "dlq.crawl-dc") >= bad_pages, 120,
                 f"{bad_pages} dead letters in dlq.crawl-dc")
        assert committed_count(env, "dlq.crawl-dc") == bad_pages
        metrics = httpx.get(f"http://127.0.0.1:{env['COINPULSE_CANDLE_METRICS_PORT']}/metrics", timeout=10).text
        agent_counts = {line.split()[0]: line.split()[1] for line in metrics.splitlines()
                        if line.startswith(("coinpulse_candle_stale_read_offsets", "coinpulse_candle_input_stall",
                                                   "coinpulse_candle_recovery_flow_holds", "coinpulse_candle_gap_seeks"))}
        print(f"fault e2e: agent {agent_counts}; {len(unique)} trades, {len(want)} candles, {candles_5m} 5-minute candles, {len(want_mentions)} mention buckets, "
              f"{len(posts)} posts, {len(comments)} comments, {malformed} malformed frames, {bad_pages} malformed pages; "
              f"faults done at {faults_done:.0f}s, total {time.monotonic() - t0:.0f}s")
    finally:
        procs.stop_all()
