"""The strategy hook's order I/O against our simulator on loopback: a batch's orders are written before
any poll, each call's poll is bounded, and idle polls take the rest — every order accounted for."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.orders.ouch.conftest import connector, wait
from xdpgw.orders import strategy
from xdpgw.orders.model import Order, Side, State, Tif
from xdpgw.orders.ouch.simulator import Exchange, VenueServer
from xdpgw.orders.router import Router
from xdpgw.orders.strategy import StrategyHandler


@pytest.fixture
def venue():
    server = VenueServer("127.0.0.1", 0, Exchange(), heartbeat_interval=0.2, timeout=5.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_orders_leave_before_each_bounded_poll_and_idle_polls_settle_them_all(venue, monkeypatch):
    conn = connector(venue.port)
    router = Router([conn])
    ids = itertools.count(1)
    polls: list[tuple[int, int, int]] = []  # (orders written when the poll started, its max_events, events)
    poll = router.poll

    def recorded(timeout: float = 0.0, max_events: int = 0) -> int:
        sent = conn.stats()["sent"]
        n = poll(timeout, max_events)
        polls.append((sent, max_events, n))
        return n

    def three_per_batch(decoded, ctx) -> None:
        assert list(ctx.rx_ns) == list(decoded.pkt_ts_ns)
        ctx.router.submit_many([Order(f"K{next(ids)}", "MSFT", Side.BUY, 100, 1, Tif.IOC) for _ in range(3)])

    try:
        router.connect(5)
        monkeypatch.setattr(router, "poll", recorded)
        handler = StrategyHandler(three_per_batch, router)
        for k in range(1, 21):
            stamps = np.array([time.monotonic_ns()], np.uint64)
            handler(SimpleNamespace(pkt_ts_ns=stamps))
            assert polls[-1][0] == 3 * k and polls[-1][1] == strategy.POLL_EVENTS  # written, then polled
        wait(router.settled, step=handler.idle)
        assert all(m == strategy.POLL_EVENTS for _, m, _ in polls)
        s = router.summary()
        assert (s["sent"], s["acked"], s["cancelled"], s["open"], s["event_duplicates"]) == (60, 60, 60, 0, 0)
        assert all(router.blotter[f"K{i}"].state is State.CANCELLED for i in range(1, 61))
        monkeypatch.setattr(strategy, "IDLE_POLL_NS", 10**15)
        handler.fresh, n = False, len(polls)
        handler.idle()  # the last poll found nothing: the next waits IDLE_POLL_NS
        assert len(polls) == n
        handler.fresh = True  # it found events: more may wait
        handler.idle()
        assert len(polls) == n + 1
    finally:
        router.close()
