"""The batch API gives the same verdicts, exposure and records as submitting row by row, and its
OUCH frames are byte-identical to the connector's Enter Order encoder."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.orders.fakes import FakeConnector
from xdpgw.orders.batch import ENTER_ORDER, OrderBatch, encode_enter_orders, plan_batch
from xdpgw.orders.model import PRICE_SCALE, Order, Side, Tif
from xdpgw.orders.ouch.messages import EnterOrderEncoder
from xdpgw.orders.risk import RiskEngine, RiskLimits
from xdpgw.orders.router import Router
from xdpgw.orders.routing import RoutingTable, VenueShare

SYMS = ["AAPL", "MSFT", "TSLA", "IBM", "GE"]


def basket(rng: random.Random, n: int) -> list[Order]:
    out = []
    for i in range(n):
        oid = f"B{rng.randrange(n * 2) if rng.random() < 0.05 else i}"  # some repeated ids
        px = rng.choice([0, 100 * PRICE_SCALE, 101 * PRICE_SCALE, 120 * PRICE_SCALE])
        out.append(Order(oid, rng.choice(SYMS), rng.choice(list(Side)), rng.choice([100, 250, 1000, 5000]), px,
                         rng.choice([Tif.DAY, Tif.IOC])))
    return out


LIMITS = [
    RiskLimits(),
    RiskLimits(max_qty=2000, max_notional=300_000 * PRICE_SCALE, restricted=frozenset({"TSLA"})),
    RiskLimits(collar_pct=10, reference_prices={"AAPL": 100 * PRICE_SCALE, "MSFT": 100 * PRICE_SCALE}),
    RiskLimits(max_open_per_symbol=7, max_gross_per_symbol=2_000_000 * PRICE_SCALE,
               reference_prices={s: 100 * PRICE_SCALE for s in SYMS}),
    RiskLimits(max_gross_total=3_000_000 * PRICE_SCALE, max_position=6000, position_limits={"GE": 500},
               duplicate_window_ns=1_000),
]


def routers(limits: RiskLimits) -> tuple[Router, Router]:
    def make() -> Router:
        table = RoutingTable(rules={"IBM": (VenueShare("a", 1, 1), VenueShare("b", 1, 2))},
                             default=(VenueShare("a", 1, 1),))
        r = Router([FakeConnector("a"), FakeConnector("b")], routing=table,
                   risk=RiskEngine(RiskLimits(**{f: getattr(limits, f) for f in limits.__slots__})),
                   clock=lambda: 5)
        return r
    return make(), make()


@pytest.mark.parametrize("k", range(len(LIMITS)))
@pytest.mark.parametrize("seed", [1, 2])
def test_batch_verdicts_equal_row_by_row(k, seed):
    orders = basket(random.Random(seed), 300)
    one, many = routers(LIMITS[k])
    for o in orders:
        one.submit(o)
    plan = many.submit_batch(OrderBatch.from_orders(orders))
    s1, s2 = one.summary(), many.summary()
    for key in ("orders", "child_orders", "sent", "denied", "open"):
        assert s1[key] == s2[key], key
    assert plan.denied() == {r: n for r, n in one.risk.denied.items() if n}
    assert {i: (r.state, r.reason, r.venue, r.order.qty) for i, r in one.blotter.orders.items()} == \
        {i: (r.state, r.reason, r.venue, r.order.qty) for i, r in many.blotter.orders.items()}
    assert one.risk.exposure == many.risk.exposure and one.risk.gross_total == many.risk.gross_total
    assert one.risk.seen_ids == many.risk.seen_ids
    sent = lambda r: [o.cl_ord_id for c in r.connectors.values() for o in c.sent]  # noqa: E731
    assert sent(one) == sent(many)


def test_frames_are_byte_identical_to_the_connector_encoder():
    orders = [Order("H8FUB8IV", "CVLT", Side.SELL_SHORT, 225, 630_200),
              Order("X" * 14, "ABCDEFGH", Side.BUY, 1, 0, Tif.IOC), Order("a", "Z", Side.SELL_SHORT_EXEMPT, 99, 7)]
    b = OrderBatch.from_orders(orders)
    frames = encode_enter_orders(b, np.arange(3), 113)
    enc = EnterOrderEncoder()
    for k, o in enumerate(orders):
        assert frames[k].tobytes() == bytes(enc.frame(o, 113 + k))
    assert frames.dtype == ENTER_ORDER and frames.tobytes()[:4] == b"\x00\x30UO"


def test_plan_encodes_per_venue_with_first_refs():
    orders = [Order(f"P{i}", "AAPL" if i % 2 else "MSFT", Side.BUY, 100, PRICE_SCALE) for i in range(6)]
    table = RoutingTable(rules={"MSFT": (VenueShare("m"),)}, default=(VenueShare("a"),))
    plan = plan_batch(OrderBatch.from_orders(orders), RiskEngine(), table, frozenset({"a", "m"}),
                      first_refs={"a": 50})
    assert plan.rows["a"].tolist() == [1, 3, 5] and plan.rows["m"].tolist() == [0, 2, 4]
    assert plan.frames["a"]["user_ref_num"].tolist() == [50, 51, 52]
    assert plan.frames["m"]["cl_ord_id"].tolist() == [b"P0" + b" " * 12, b"P2" + b" " * 12, b"P4" + b" " * 12]


def test_a_bad_row_refuses_the_batch_before_anything_is_reserved():
    orders = [Order(f"G{i}", "AAPL", Side.BUY, 100, PRICE_SCALE) for i in range(5)]
    b = OrderBatch.from_orders(orders)
    b.qty[3] = 0
    r = Router([FakeConnector("a")], clock=lambda: 5)
    with pytest.raises(ValueError, match="order G3: quantity 0 must be positive"):
        r.submit_batch(b)
    wide = OrderBatch(np.array(["G" * 15], "S20"), np.array(["AAPL"], "S8"), np.array([b"B"]), np.array([1]),
                      np.array([1]))
    with pytest.raises(ValueError, match="must be 1-14 ASCII"):
        r.submit_batch(wide)
    assert not r.blotter.orders and not r.risk.exposure and not r.risk.seen_ids and not r.connectors["a"].sent
