"""The throttle: never more than N orders in ANY one-second window (the 2N cases), queue or reject."""

from __future__ import annotations

import random

import pytest

from tests.orders.fakes import FakeConnector
from xdpgw.orders.model import Order, Side, State
from xdpgw.orders.router import Router
from xdpgw.orders.throttle import SECOND_NS, SlidingWindow, Throttle

N = 10
MS = 1_000_000


def max_in_any_window(times: list[int], w: int = SECOND_NS) -> int:
    """Most sends in any half-open window [t, t + w) (it suffices to start windows at sends)."""
    times = sorted(times)
    j, best = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - w:
            j += 1
        best = max(best, i - j + 1)
    return best


def drive(th: Throttle, attempts: list[int], venue: str = "v") -> list[int]:
    return [t for t in attempts if th.try_acquire(venue, t)]


def test_token_bucket_case_n_at_once_then_n_more_within_the_second():
    """A full token bucket sends N at t=0 and refills N more before t=1 s: 2N in one second."""
    th = Throttle(per_venue=N)
    attempts = [0] * N + [i * (SECOND_NS // N) // 2 + 1 for i in range(N)]  # N more in the first 0.5 s
    sent = drive(th, attempts)
    assert len(sent) == N
    assert th.try_acquire("v", SECOND_NS - 1) is False
    assert th.try_acquire("v", SECOND_NS) is True  # the first send's window is over


def test_fixed_counter_case_n_before_and_n_after_a_second_boundary():
    """A counter reset each second lets N through at 0.99 s and N more at 1.01 s."""
    th = Throttle(total=N)
    sent = drive(th, [990 * MS] * N + [1010 * MS] * N)
    assert sent == [990 * MS] * N
    later = drive(th, [1990 * MS - 1] * N + [1990 * MS] * N)
    assert later == [1990 * MS] * N
    assert max_in_any_window(sent + later) == N


def test_random_attempts_never_exceed_n_in_any_window():
    rng = random.Random(7)
    th = Throttle(total=N, per_venue=N // 2)
    t, sent = 0, {"a": [], "b": []}
    for _ in range(5000):
        t += rng.choice([0, 0, 1, MS, 30 * MS, 200 * MS])
        v = rng.choice("ab")
        if th.try_acquire(v, t):
            sent[v].append(t)
    assert max_in_any_window(sent["a"]) == N // 2
    assert max_in_any_window(sent["b"]) == N // 2
    assert max_in_any_window(sent["a"] + sent["b"]) <= N


def test_sliding_window_available_and_free_at():
    w = SlidingWindow(3)
    assert w.available(0) == 3
    for t in (0, 10, 20):
        w.record(t)
    assert (w.available(20), w.free_at()) == (0, SECOND_NS)
    assert w.available(SECOND_NS + 10) == 2
    with pytest.raises(Exception, match="at least 1"):
        SlidingWindow(0)


class Clock:
    def __init__(self) -> None:
        self.t = 1

    def __call__(self) -> int:
        return self.t


def orders(n: int, sym: str = "AAPL") -> list[Order]:
    return [Order(f"Q{i}", sym, Side.BUY, 100, 1_000_000) for i in range(n)]


def test_router_queues_then_releases_in_order_within_the_rate():
    clock, v = Clock(), FakeConnector()
    r = Router([v], throttle=Throttle(per_venue=N), clock=clock)
    recs = r.submit_many(orders(2 * N))
    assert len(v.sent) == N
    assert [x.state for x in recs[N:]] == [State.PENDING_NEW] * N
    clock.t += SECOND_NS // 2
    r.poll()
    assert len(v.sent) == N
    clock.t += SECOND_NS // 2
    r.poll()
    assert [x.cl_ord_id for x in v.sent] == [f"Q{i}" for i in range(2 * N)]
    s = r.summary()
    assert (s["throttled"], s["sent"], s["queued"]) == (N, 2 * N, 0)


def test_router_reject_policy_denies():
    v = FakeConnector()
    r = Router([v], throttle=Throttle(total=N, policy="reject"), clock=Clock())
    r.submit_many(orders(N + 3))
    assert len(v.sent) == N
    assert r.summary()["denied"] == {"throttle": 3}
    assert r.summary()["throttled"] == 3


def test_queued_orders_are_risk_checked_again_when_they_leave():
    clock, v = Clock(), FakeConnector()
    r = Router([v], throttle=Throttle(per_venue=2), clock=clock)
    r.submit_many(orders(4))
    r.risk.limits.restricted = frozenset({"AAPL"})  # e.g. the symbol was restricted meanwhile
    clock.t += SECOND_NS
    r.poll()
    assert len(v.sent) == 2
    assert r.summary()["denied"] == {"restricted": 2}


def test_cancel_of_a_queued_order_never_sends_it():
    v = FakeConnector()
    r = Router([v], throttle=Throttle(per_venue=1), clock=Clock())
    r.submit_many(orders(2))
    r.cancel("Q1")
    assert r.blotter["Q1"].state is State.CANCELLED
    assert r.throttle.queued == 0
    assert [x.cl_ord_id for x in v.sent] == ["Q0"]
