"""A strategy for the hook tests: one IOC buy per feed packet (``--strategy tests.orders.strat:one_per_packet``)."""

from __future__ import annotations

import itertools

from xdpgw.orders.model import Order, Side, Tif

_ids = itertools.count(1)


def one_per_packet(decoded, ctx) -> None:
    ctx.router.submit_many([Order(f"S{next(_ids)}", "XDPT", Side.BUY, 100, 1_0000, Tif.IOC)
                            for _ in range(len(ctx.rx_ns))])
