"""Property tests: the incremental candle engine against the brute-force reference (reference.py)."""

from __future__ import annotations

import json

import pytest
from coinpulse_candle_agent.clock import Timing
from coinpulse_candle_agent.engine import CandleEngine
from coinpulse_candle_agent.trades import Trade
from coinpulse_testing.reference import accepted_trades, candle_diff, closed_by, reference_candles
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

BASE = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000 + 3_000_000  # 10 min before an hour boundary
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-DOGE"]
PRICES = [100.0, 101.0, 99.5, 100.5, 102.0]
VOLUMES = [0.1, 0.25, 1.0, 3.3, 0.001]


@st.composite
def scenarios(draw):
    grace = draw(st.sampled_from([0, 2_000, 5_000]))
    lateness = grace + draw(st.sampled_from([0, 30_000, 120_000, 600_000]))
    timing = Timing(grace, lateness)
    n_markets = draw(st.integers(1, 4))
    n_parts = draw(st.integers(1, 2))
    span = draw(st.sampled_from([90_000, 400_000, 1_500_000]))
    items = []  # (arrival_key, tiebreak, event)
    for mi, market in enumerate(MARKETS[:n_markets]):
        part = mi % n_parts
        # idle markets: some stop early
        m_span = draw(st.sampled_from([span, span // 3]))
        n = draw(st.integers(0, 40))
        times = sorted(draw(st.lists(st.integers(0, m_span), min_size=n, max_size=n)))
        for i, dt in enumerate(times):
            t = Trade(market, 1000 + i, BASE + dt, draw(st.sampled_from(PRICES)),
                      draw(st.sampled_from(VOLUMES)), draw(st.booleans()))
            copies = 1 + draw(st.sampled_from([0, 0, 0, 1, 2]))  # duplicates
            for _ in range(copies):
                # in order, within the grace, beyond the grace, beyond the lateness
                delay = draw(st.sampled_from([0, 0, 0, 0, 1_500, 20_000, 200_000, 900_000]))
                items.append((t.ts + delay, draw(st.integers(0, 10**6)), ("trade", part, t)))
    for _ in range(draw(st.integers(0, 3))):  # idle timer ticks
        at = BASE + draw(st.integers(0, span + 60_000))
        items.append((at, draw(st.integers(0, 10**6)), ("tick", draw(st.integers(0, n_parts - 1)), at)))
    items.sort(key=lambda x: (x[0], x[1]))
    events = [e for _, _, e in items]
    if draw(st.booleans()):  # final timer: every bucket closes
        end = BASE + span + 4 * 3_600_000
        events += [("tick", p, end) for p in range(n_parts)]
    return timing, events, n_parts


class Harness:
    """Feeds events to one engine per partition, recording emissions; can kill and restore from 'changelog'."""

    def __init__(self, timing: Timing, n_parts: int):
        self.timing = timing
        self.engines = {p: CandleEngine(timing) for p in range(n_parts)}
        self.changelog: dict[int, dict[str, dict]] = {p: {} for p in range(n_parts)}
        self.emitted: list[tuple[int, dict, int | None]] = []  # (partition, record, watermark at emission)
        self.late: list[Trade] = []

    def feed(self, event) -> None:
        kind, p, item = event
        eng = self.engines[p]
        if kind == "tick":
            emits = eng.advance(item)
        else:
            out = eng.add(item)
            if out.status == "late":
                self.late.append(item)
            emits = out.emits
        self.emitted += [(p, e, eng.watermark) for e in emits]

    def flush(self) -> None:
        for p, eng in self.engines.items():
            for k, v in eng.take_changes():
                if v is None:
                    self.changelog[p].pop(k, None)
                else:
                    self.changelog[p][k] = json.loads(json.dumps(v))  # what the changelog round trip keeps

    def restart(self) -> None:
        for p in self.engines:
            eng = CandleEngine(self.timing)
            emits = eng.load(self.changelog[p].items())
            self.emitted += [(p, e, eng.watermark) for e in emits]
            self.engines[p] = eng

    def finals(self) -> dict[tuple, dict]:
        out = {}
        for _, rec, _ in self.emitted:
            out[(rec["interval"], rec["market"], rec["bucket_start"])] = rec
        return out


def check_against_reference(h: Harness, events, timing: Timing) -> None:
    unique, late, wm = accepted_trades(events, timing)
    ref = reference_candles(unique)
    market_part = {e[2].market: e[1] for e in events if e[0] == "trade"}
    expected = {k: v for k, v in ref.items() if closed_by(k, wm.get(market_part[k[1]]), timing)}
    finals = h.finals()
    assert set(finals) == set(expected)
    for k, want in expected.items():
        assert candle_diff(finals[k], want) == [], k
    assert sorted((t.market, t.seq) for t in h.late) == sorted((t.market, t.seq) for t in late)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_final_candles_equal_reference(scn):
    timing, events, n_parts = scn
    h = Harness(timing, n_parts)
    for e in events:
        h.feed(e)
    check_against_reference(h, events, timing)
    # revisions per key are 0, 1, 2, ... in emission order, and revision 0 only after the close time
    seen: dict[tuple, int] = {}
    for _, rec, w in h.emitted:
        k = (rec["interval"], rec["market"], rec["bucket_start"])
        assert rec["revision"] == seen.get(k, -1) + 1
        seen[k] = rec["revision"]
        if rec["revision"] == 0:
            assert closed_by(k, w, timing)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_restart_with_replay_gives_same_final_candles(scn, data):
    """Crash after a flush, restore from the changelog, re-deliver the uncommitted tail: same final candles."""
    timing, events, n_parts = scn
    straight = Harness(timing, n_parts)
    for e in events:
        straight.feed(e)
    cut = data.draw(st.integers(0, len(events)))
    committed = data.draw(st.integers(0, cut))  # offsets committed up to here; cut..: lost with the crash
    h = Harness(timing, n_parts)
    for e in events[:cut]:
        h.feed(e)
    h.flush()
    h.restart()
    for e in events[committed:]:
        h.feed(e)
    assert h.finals().keys() == straight.finals().keys()
    for k, rec in straight.finals().items():
        assert h.finals()[k] == rec
