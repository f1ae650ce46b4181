"""How long an idle AF_XDP receiver may sleep in one wait (pure: no root, no XDP)."""

from __future__ import annotations

import pytest

from xdpgw.transport.xdp.rx import idle_wait_ms


@pytest.mark.parametrize(("left", "watchdog_ns", "ms"), [
    (None, 0, 100),            # forever: 100 ms steps, so signals get through
    (2.5, 0, 2500),            # no watchdog: the caller's whole timeout
    (0.0004, 0, 1),            # a sliver left: at least 1 ms
    (-0.01, 0, 1),             # past the deadline (the loop ends after this wait)
    (None, 100_000_000, 25),   # watchdog 100 ms: a quarter of it
    (2.5, 100_000_000, 25),
    (0.01, 100_000_000, 10),   # less left than a quarter of the limit: what is left
    (None, 500_000_000, 100),  # a long limit does not lengthen the wait
    (1.0, 3_000_000, 0),       # under a 4 ms limit: poll without sleeping
    (None, 100_000, 0),        # 100 us
])
def test_an_idle_wait_is_bounded_by_the_timeout_and_a_quarter_of_the_watchdog_limit(left, watchdog_ns, ms):
    assert idle_wait_ms(left, watchdog_ns) == ms
