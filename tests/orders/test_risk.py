"""Every pre-trade risk check, through the engine and through the router (denied = never sent)."""

from __future__ import annotations

import pytest

from tests.orders.fakes import FakeConnector
from xdpgw.orders.model import PRICE_SCALE, Order, Side, State
from xdpgw.orders.risk import REASONS, RiskEngine, RiskLimits, limits_from_mapping
from xdpgw.orders.router import Router

PX = 100 * PRICE_SCALE  # $100


def o(i="A", sym="AAPL", side=Side.BUY, qty=100, price=PX) -> Order:
    return Order(i, sym, side, qty, price)


CASES = [
    ("restricted", RiskLimits(restricted=frozenset({"AAPL"})), o()),
    ("max_qty", RiskLimits(max_qty=99), o()),
    ("max_notional", RiskLimits(max_notional=100 * PX - 1), o()),
    ("price_collar", RiskLimits(collar_pct=5, reference_prices={"AAPL": 90 * PRICE_SCALE}), o()),
    ("no_reference_price", RiskLimits(collar_pct=5), o()),
    ("max_open_orders", RiskLimits(max_open_per_symbol=0), o()),
    ("gross_notional_symbol", RiskLimits(max_gross_per_symbol=100 * PX - 1), o()),
    ("gross_notional_total", RiskLimits(max_gross_total=100 * PX - 1), o()),
    ("position_limit", RiskLimits(max_position=99), o()),
    ("position_limit", RiskLimits(max_position=1000, position_limits={"AAPL": 50}), o(side=Side.SELL_SHORT)),
]


@pytest.mark.parametrize(("reason", "limits", "order"), CASES, ids=[c[0] for c in CASES])
def test_each_check_denies_counts_and_never_sends(reason, limits, order):
    assert reason in REASONS
    v = FakeConnector()
    r = Router([v], risk=RiskEngine(limits))
    (rec,) = r.submit(order)
    assert (rec.state, rec.reason) == (State.DENIED, reason)
    assert v.sent == []
    assert r.risk.denied == {reason: 1}
    assert r.summary()["denied"] == {reason: 1}


def test_limits_are_inclusive_and_off_by_default():
    exact = RiskLimits(max_qty=100, max_notional=100 * PX, max_open_per_symbol=1, max_gross_per_symbol=100 * PX,
                       max_gross_total=100 * PX, max_position=100,
                       collar_pct=5, reference_prices={"AAPL": 105 * PRICE_SCALE})
    assert RiskEngine(exact).check(o()) is None
    assert RiskEngine().check(o(qty=10**9, price=10**12)) is None


def test_collar_uses_the_live_reference_first():
    book = {"AAPL": 100 * PRICE_SCALE}
    eng = RiskEngine(RiskLimits(collar_pct=1, reference_prices={"AAPL": 50 * PRICE_SCALE}), reference=book.get)
    assert eng.check(o()) is None
    book["AAPL"] = 110 * PRICE_SCALE
    assert eng.check(o()) == "price_collar"
    book.clear()  # the feed knows nothing: the configured price
    assert eng.check(o(price=50 * PRICE_SCALE)) is None


def test_market_order_valued_at_reference():
    eng = RiskEngine(RiskLimits(max_notional=100 * PX, reference_prices={"AAPL": PX}))
    assert eng.check(o(qty=100, price=0)) is None
    assert eng.check(o(qty=101, price=0)) == "max_notional"
    assert RiskEngine(RiskLimits(max_notional=1)).check(o(price=0)) == "no_reference_price"


def test_duplicates_same_id_and_same_order_in_window():
    eng = RiskEngine(RiskLimits(duplicate_window_ns=1_000))
    assert eng.accept(o("A"), now_ns=0) is None
    assert eng.accept(o("A", qty=200), now_ns=5_000) == "duplicate_id"
    assert eng.accept(o("B"), now_ns=999) == "duplicate_order"
    assert eng.accept(o("C"), now_ns=1_000) is None  # window over
    assert eng.accept(o("D", qty=200), now_ns=1_001) is None  # another quantity
    assert eng.denied == {"duplicate_id": 1, "duplicate_order": 1}


def test_duplicate_id_through_the_router_is_not_sent_twice():
    v = FakeConnector()
    r = Router([v])
    r.submit(o("A"))
    assert r.submit(o("A", qty=200)) == []
    assert [x.cl_ord_id for x in v.sent] == ["A"]
    assert r.summary()["denied"] == {"duplicate_id": 1}


def test_exposure_open_orders_and_gross_per_day():
    eng = RiskEngine(RiskLimits(max_open_per_symbol=2, max_gross_total=310 * PX))
    assert eng.accept(o("A")) is None
    assert eng.accept(o("B", sym="MSFT")) is None
    assert eng.accept(o("C")) is None  # 2 open AAPL
    assert eng.accept(o("D", qty=10, price=PRICE_SCALE)) == "max_open_orders"
    eng.release("AAPL", Side.BUY, 100)
    assert eng.accept(o("E", qty=10, price=PRICE_SCALE)) is None
    assert eng.accept(o("F", sym="MSFT", qty=100)) == "gross_notional_total"  # gross is not given back
    eng.new_day()
    assert eng.accept(o("G", sym="MSFT", qty=100)) is None


def test_position_limit_counts_fills_and_open_orders_per_side():
    eng = RiskEngine(RiskLimits(max_position=300))
    assert eng.accept(o("A", qty=200)) is None
    assert eng.check(o("B", qty=200)) == "position_limit"  # 200 open + 200 > 300
    eng.on_fill("AAPL", Side.BUY, 200)
    eng.release("AAPL", Side.BUY, 0)
    assert eng.positions() == {"AAPL": 200}
    assert eng.check(o("B", qty=101)) == "position_limit"
    assert eng.check(o("B", side=Side.SELL, qty=500)) is None  # 200 - 500 = -300
    assert eng.check(o("B", side=Side.SELL, qty=501)) == "position_limit"


def test_fills_move_position_through_the_router():
    v = FakeConnector()
    r = Router([v], risk=RiskEngine(RiskLimits(max_position=150)))
    r.submit(o("A", qty=100))
    r.poll()
    v.fill("A", 100, PX, "m1")
    r.poll()
    assert r.risk.positions() == {"AAPL": 100}
    (rec,) = r.submit(o("B", qty=100))
    assert rec.reason == "position_limit"


def test_kill_switch_denies_new_orders():
    eng = RiskEngine()
    eng.kill("test")
    assert eng.accept(o()) == "kill_switch"
    eng.resume()
    assert eng.accept(o()) is None


def test_limits_from_config_mapping():
    lim = limits_from_mapping({"max_qty": 1000, "max_notional": "50000.50", "collar_pct": 5,
                               "reference_prices": {"AAPL": 190.25}, "restricted": ["TSLA"],
                               "duplicate_window_ms": 50, "max_gross_total": 1e6})
    assert (lim.max_qty, lim.max_notional, lim.reference_prices, lim.restricted, lim.duplicate_window_ns) == \
        (1000, 500_005_000, {"AAPL": 1_902_500}, frozenset({"TSLA"}), 50_000_000)
    assert lim.max_gross_total == 10_000_000_000
    with pytest.raises(Exception, match="unknown risk setting"):
        limits_from_mapping({"max_qyt": 1})


def test_collar_reference_from_a_live_book_mid():
    from tests.book.conftest import run_stream
    from tests.book.test_engine import add, directory, stream
    from xdpgw.orders.strategy import StrategyHandler, book_reference

    books, _, _ = run_stream(stream(*directory("AAPL", "MSFT"), add(1, b"B", 100, 100_0000),
                                    add(2, b"S", 100, 101_0000), add(3, b"B", 100, 50_0000, loc=2, stock="MSFT")))
    ref = book_reference(books)
    assert (ref("AAPL"), ref("MSFT"), ref("TSLA")) == (100_5000, None, None)  # two-sided, one-sided, unknown
    r = Router([FakeConnector()], risk=RiskEngine(RiskLimits(collar_pct=1, reference_prices={"MSFT": PX})))
    StrategyHandler(lambda d, c: None, r).attach_feed(type("BookFeed", (), {"books": books})())
    assert r.risk.check(o(price=100_0000)) is None  # within 1 % of the mid 100.50
    assert r.risk.check(o(price=99_0000)) == "price_collar"
    assert r.risk.check(o(sym="MSFT", price=PX)) is None  # one-sided book: the configured price
