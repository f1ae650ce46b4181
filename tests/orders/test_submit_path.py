"""The per-order hot path's precomputed structures (risk's per-symbol records, the router's venue per
symbol, the throttle's ``active``, ``new_record``) follow every change made at run time."""

from __future__ import annotations

import pytest

from tests.orders.fakes import FakeConnector
from xdpgw.orders.model import PRICE_SCALE, Order, Side, State
from xdpgw.orders.risk import RiskEngine, RiskLimits
from xdpgw.orders.router import Router
from xdpgw.orders.routing import RoutingTable, VenueShare
from xdpgw.orders.state import OrderRecord, new_record
from xdpgw.orders.throttle import SlidingWindow, Throttle

PX = 100 * PRICE_SCALE
_ids = iter(range(10**6))


def o(sym: str = "AAPL", side: Side = Side.BUY, qty: int = 100, price: int = PX, venue: str | None = None) -> Order:
    return Order(f"T{next(_ids)}", sym, side, qty, price, venue=venue)


def verdict(r: Router, order: Order) -> str:
    (rec,) = r.submit(order)
    return rec.reason if rec.state is State.DENIED else "sent"


def test_limits_changed_at_run_time_apply_to_the_next_order():
    lim = RiskLimits()
    r = Router([FakeConnector("a")], risk=RiskEngine(lim))
    assert verdict(r, o()) == "sent"  # the symbol's record is made now
    lim.max_qty = 50
    assert verdict(r, o()) == "max_qty"
    lim.max_qty = None
    lim.restricted = {"AAPL"}  # a set is kept as a frozenset
    assert verdict(r, o()) == "restricted" and isinstance(lim.restricted, frozenset)
    lim.restricted = frozenset()
    lim.collar_pct = 5
    assert verdict(r, o()) == "no_reference_price"
    lim.reference_prices["AAPL"] = 90 * PRICE_SCALE  # in place
    assert verdict(r, o()) == "price_collar"
    lim.reference_prices.update(AAPL=PX)
    assert verdict(r, o()) == "sent"
    lim.reference_prices.pop("AAPL")
    assert verdict(r, o()) == "no_reference_price"
    lim.collar_pct = None
    lim.max_position = 10**6
    lim.position_limits["AAPL"] = 250  # 200 open to buy so far
    assert verdict(r, o()) == "position_limit"
    del lim.position_limits["AAPL"]
    assert verdict(r, o()) == "sent"
    lim.max_open_per_symbol = 3
    assert verdict(r, o()) == "max_open_orders"
    lim.max_gross_total = 0
    assert verdict(r, o("MSFT")) == "gross_notional_total"
    r.risk.limits = RiskLimits(max_notional=PX)  # a whole new set of limits
    assert verdict(r, o("MSFT")) == "max_notional"
    assert verdict(r, o("MSFT", qty=1)) == "sent"
    r.risk.reference = {"MSFT": 2 * PX}.get  # a live reference: the market order is valued at it
    assert verdict(r, o("MSFT", qty=1, price=0)) == "max_notional"


@pytest.mark.parametrize("collar", [5, 2.5, 0.1, 1e-9, 0])
def test_collar_band_edges_are_exact(collar):
    """The per-symbol band decides only what surely passes; every price is judged as
    ``|price - ref| * 100 > collar * ref``, whether a float collar rounds the band or not."""
    ref = 123_457
    eng = RiskEngine(RiskLimits(collar_pct=collar, reference_prices={"X": ref}))
    for price in range(max(1, ref - ref // 15), ref + ref // 15, 97):
        for p in (price, ref - (price - ref)):
            if p <= 0:
                continue
            want = "price_collar" if abs(p - ref) * 100 > collar * ref else None
            assert eng.check(Order("A", "X", Side.BUY, 1, p)) == want, p
    for edge in (ref + int(collar * ref / 100), ref - int(collar * ref / 100)):
        for p in (edge - 1, edge, edge + 1):
            want = "price_collar" if abs(p - ref) * 100 > collar * ref else None
            assert eng.check(Order("A", "X", Side.BUY, 1, p)) == want, p


def test_sums_checked_are_the_sums_kept():
    eng = RiskEngine(RiskLimits(max_open_per_symbol=2, max_gross_per_symbol=3 * PX, max_gross_total=5 * PX,
                                max_position=150))
    assert eng.accept(o(qty=1)) is None
    assert eng.accept(o(side=Side.SELL, qty=2)) is None
    e = eng.exposure["AAPL"]
    assert (e.open_orders, e.open_buy, e.open_sell, e.gross, eng.gross_total) == (2, 1, 2, 3 * PX, 3 * PX)
    assert eng.accept(o(qty=1)) == "max_open_orders"
    assert eng.check(o(qty=1)) == "max_open_orders"  # check reserves nothing
    assert (e.open_orders, e.gross) == (2, 3 * PX)


def test_the_venue_per_symbol_follows_connections_and_route_changes():
    a, b = FakeConnector("a"), FakeConnector("b")
    table = RoutingTable({"AAPL": (VenueShare("a"),)}, default=(VenueShare("b"),))
    r = Router([a, b], routing=table)
    r.submit(o())
    r.submit(o("MSFT"))
    assert [x.symbol for x in a.sent] == ["AAPL"] and [x.symbol for x in b.sent] == ["MSFT"]
    table.set_active("a", False)  # AAPL has no usable venue any more
    assert verdict(r, o()) == "no_route"
    table.rules["AAPL"] = (VenueShare("b"),)
    table.invalidate()
    r.submit(o())
    assert [x.symbol for x in b.sent] == ["MSFT", "AAPL"]
    b._connected = False  # a venue goes away: the connected set changes
    r.poll()
    assert verdict(r, o()) == "no_route"
    assert verdict(r, o(venue="a")) == "sent"  # an order naming its venue goes there
    assert verdict(r, o(venue="b")) == "no_route"


def test_throttle_active_follows_its_limits():
    t = Throttle()
    assert not t.active
    t.total = SlidingWindow(1)
    assert t.active
    t.total = None
    assert not t.active
    assert Throttle(per_venue={"a": 1}).active and not Throttle(per_venue={}).active


def test_new_record_is_the_dataclass_record():
    order = o()
    assert new_record(order, "a", State.SENT, 7) == OrderRecord(order, State.SENT, "a", order.qty, send_ns=7)
    assert new_record(order, "a", State.PENDING_NEW) == OrderRecord(order, venue="a")
