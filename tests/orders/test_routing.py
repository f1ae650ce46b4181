"""Routing rules and splitting: shares in round lots, remainder to priority, skipped venues, child ids."""

from __future__ import annotations

import pytest

from xdpgw.orders.model import MAX_CL_ORD_ID, Order, Side
from xdpgw.orders.routing import NoRoute, RoutingTable, VenueShare, child_id, routing_from_mapping


def parent(qty: int, i: str = "P1", venue: str | None = None) -> Order:
    return Order(i, "AAPL", Side.BUY, qty, 1_000_000, venue=venue)


TABLE = RoutingTable(rules={"AAPL": (VenueShare("a", 0.5, 2), VenueShare("b", 0.3, 1), VenueShare("c", 0.2, 3))},
                     default=(VenueShare("a"),))


def legs(children):
    return [(c.venue, c.qty) for c in children]


def test_split_by_share_in_round_lots_remainder_to_highest_priority():
    kids = TABLE.split(parent(1050))
    # 1050 * .5 = 525 -> 500, * .3 = 315 -> 300, * .2 = 210 -> 200; 50 left go to b (priority 1)
    assert legs(kids) == [("b", 350), ("a", 500), ("c", 200)]
    assert [c.cl_ord_id for c in kids] == ["P1-1", "P1-2", "P1-3"]
    assert all(c.parent_id == "P1" for c in kids)
    assert sum(c.qty for c in kids) == 1050


def test_small_order_stays_whole_with_its_id():
    (kid,) = TABLE.split(parent(99))
    assert (kid.cl_ord_id, kid.venue, kid.qty, kid.parent_id) == ("P1", "b", 99, None)


def test_inactive_and_disconnected_venues_are_skipped_and_share_respread():
    t = RoutingTable(rules={"AAPL": (VenueShare("a", 0.5, 2), VenueShare("b", 0.3, 1, active=False),
                                     VenueShare("c", 0.2, 3))})
    assert legs(t.split(parent(1000))) == [("a", 800), ("c", 200)]  # 5:2 -> 714 -> 700 + 100 left
    assert legs(t.split(parent(1000), connected={"c"})) == [("c", 1000)]
    with pytest.raises(NoRoute, match="no active connected venue"):
        t.split(parent(1000), connected={"b"})
    with pytest.raises(NoRoute):
        RoutingTable().split(parent(100))


def test_default_route_and_named_venue():
    assert legs(TABLE.split(Order("X", "MSFT", Side.SELL, 700, 1))) == [("a", 700)]
    assert legs(TABLE.split(parent(1000, venue="c"))) == [("c", 1000)]
    with pytest.raises(NoRoute, match="not connected"):
        TABLE.split(parent(1000, venue="c"), connected={"a"})


def test_child_ids_are_deterministic_and_fit():
    assert child_id("ABC", 1) == "ABC-1"
    assert child_id("ABC", 36) == "ABC-10"
    long = "X" * MAX_CL_ORD_ID
    a, b = child_id(long, 3), child_id(long, 3)
    assert a == b and len(a) <= MAX_CL_ORD_ID and a.endswith("-3")
    assert child_id("Y" * MAX_CL_ORD_ID, 3) != a
    kids = TABLE.split(parent(1000, i=long))
    assert len({c.cl_ord_id for c in kids}) == 3


def test_routing_from_config():
    t = routing_from_mapping({"lot": 10, "symbols": {"AAPL": [{"venue": "x", "share": 3, "priority": 2},
                                                              {"venue": "y", "share": 1, "active": True}]}},
                             ["x", "y"])
    assert [v.venue for v in t.default] == ["x", "y"]
    assert legs(t.split(parent(95))) == [("y", 25), ("x", 70)]
    with pytest.raises(Exception, match="not configured"):
        routing_from_mapping({"default": [{"venue": "z"}]}, ["x"])
