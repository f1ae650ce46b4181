"""A strategy for the hook tests: one IOC buy per delivered feed batch
(``--strategy tests.orders.strat:one_per_batch``)."""

from __future__ import annotations

import itertools
import time

from xdpgw.orders.model import Order, Side, Tif

_ids = itertools.count(1)


def one_per_batch(decoded, ctx) -> None:
    assert len(ctx.rx_ns) >= 1  # the receive stamps of the batch that brought this
    assert 0 < int(ctx.rx_ns[-1]) <= time.monotonic_ns()  # CLOCK_MONOTONIC ns, taken before we got it
    ctx.router.submit(Order(f"S{next(_ids)}", "XDPT", Side.BUY, 100, 1_0000, Tif.IOC))
