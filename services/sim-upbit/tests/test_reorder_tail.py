"""A reorder window that no later frame fills (the feed's last frames) still reaches the client.

Before the fix, a push into a partly filled window did not wake the sender: with the queue empty it slept until a
later push filled the window, so at the end of a feed up to `reorder_window - 1` frames were never sent (the ingest
fault test then missed the simulator's last trade, now and then).
"""

import pytest
from coinpulse_sim_upbit.hub import Conn, Faults, Stats

pytestmark = pytest.mark.unit


async def test_a_push_into_a_partly_filled_window_wakes_the_sender():
    c = Conn(0, {"trade": {"KRW-BTC"}}, "DEFAULT", Faults(reorder_window=6), seed=1, stats=Stats())
    c.wake.clear()
    c.push(b"last frame")
    assert c.window == [b"last frame"] and not c.queue
    assert c.wake.is_set()  # the sender wakes, waits its 0.2 s for more, then flushes the window
    c.flush_window()
    assert list(c.queue) == [b"last frame"]
