"""The order model: every field checked on construction (the fast ``__init__`` keeps the dataclass's
checks, signature and immutability)."""

from __future__ import annotations

import dataclasses

import pytest

from xdpgw.orders.model import Order, Side, Tif


@pytest.mark.parametrize("args, message", [
    (("", "AAPL", Side.BUY, 1, 1), "order id '' must be 1-14 ASCII"),
    (("X" * 15, "AAPL", Side.BUY, 1, 1), "must be 1-14 ASCII"),
    (("é1", "AAPL", Side.BUY, 1, 1), "must be 1-14 ASCII"),
    (("A", "", Side.BUY, 1, 1), "symbol '' must be 1-8"),
    (("A", "TOOLONGSYM", Side.BUY, 1, 1), "symbol 'TOOLONGSYM' must be 1-8"),
    (("A", "ÄPL", Side.BUY, 1, 1), "must be 1-8 ASCII"),
    (("A", "AAPL", Side.BUY, 0, 1), "quantity 0 must be positive"),
    (("A", "AAPL", Side.BUY, 1, -1), "price -1 must not be negative"),
])
def test_bad_orders_are_refused_with_the_reason(args, message):
    with pytest.raises(ValueError, match=message):
        Order(*args)


def test_an_order_is_frozen_hashable_and_replaceable():
    o = Order("A1", "AAPL", Side.SELL_SHORT, 100, 1_0000, Tif.IOC, venue="v", parent_id="P")
    assert (o.cl_ord_id, o.symbol, o.side, o.qty, o.price, o.tif, o.venue, o.parent_id) == \
        ("A1", "AAPL", Side.SELL_SHORT, 100, 1_0000, Tif.IOC, "v", "P")
    assert Order("A1", "AAPL", Side.BUY, 1, 0) == Order(cl_ord_id="A1", symbol="AAPL", side=Side.BUY, qty=1, price=0,
                                                         tif=Tif.DAY)
    assert len({o, dataclasses.replace(o)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.qty = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="quantity 0"):
        dataclasses.replace(o, qty=0)
    with pytest.raises(TypeError):
        Order("A1", "AAPL", Side.BUY)  # type: ignore[call-arg]
