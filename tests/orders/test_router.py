"""The router with in-memory venues: split sends, cancels, replaces, the kill switch, the summary."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.orders.fakes import FakeConnector
from xdpgw.errors import GatewayError
from xdpgw.orders.model import Order, Side, State
from xdpgw.orders.risk import RiskEngine, RiskLimits
from xdpgw.orders.router import Router, stats_for_metrics
from xdpgw.orders.routing import RoutingTable, VenueShare
from xdpgw.orders.throttle import Throttle
from xdpgw.orders.venue import Cancelled, Expired, SessionEvent

S = State
PX = 1_000_000


def two_venues(**kw):
    a, b = FakeConnector("a"), FakeConnector("b")
    table = RoutingTable(default=(VenueShare("a", 1, 1), VenueShare("b", 1, 2)))
    return Router([a, b], routing=table, **kw), a, b


def test_split_children_go_to_their_venues_and_fill_into_the_position():
    r, a, b = two_venues()
    kids = r.submit(Order("P", "AAPL", Side.BUY, 250, PX))
    assert [(k.venue, k.order.qty) for k in kids] == [("a", 150), ("b", 100)]
    r.poll()
    a.fill("P-1", 150, PX, "m1")
    b.fill("P-2", 60, PX + 100, "m2")
    r.poll()
    s = r.summary()
    assert (s["orders"], s["child_orders"], s["sent"], s["acked"], s["filled"], s["partially_filled"]) == \
        (1, 2, 2, 2, 1, 1)
    assert s["positions"] == {"AAPL": 210}
    assert s["latency_ns"]["send_ack"]["count"] == 2 and s["latency_ns"]["send_fill"]["count"] == 2


def test_disconnected_venue_gets_nothing():
    r, a, b = two_venues()
    b.drop()
    r.poll()
    kids = r.submit(Order("P", "AAPL", Side.BUY, 250, PX))
    assert [(k.venue, k.order.qty) for k in kids] == [("a", 250)]
    a.drop()
    r.poll()
    (rec,) = r.submit(Order("Q", "AAPL", Side.BUY, 100, PX))
    assert (rec.state, rec.reason) == (S.DENIED, "no_route")


def test_cancel_parent_cancels_children_and_replace():
    r, a, b = two_venues()
    r.submit(Order("P", "AAPL", Side.BUY, 250, PX))
    r.poll()
    r.cancel("P")
    assert a.cancels == [("P-1", 0)] and b.cancels == [("P-2", 0)]
    assert r.blotter["P-1"].state is S.CANCEL_PENDING
    with pytest.raises(GatewayError, match="already pending"):
        r.cancel("P-1")
    a.events.append(Cancelled("P-1", 150, "U", 9))
    r.poll()
    with pytest.raises(GatewayError, match="illegal transition cancelled -> cancel_pending"):
        r.cancel("P-1")
    r.submit(Order("Z", "MSFT", Side.SELL, 100, PX, venue="b"))
    r.poll()
    new = r.replace("Z", "Z2", qty=200, price=PX + 1)
    assert b.replaces[-1][1].qty == 200 and new.state is S.SENT
    b.replaced("Z", "Z2", 200, PX + 1)
    r.poll()
    assert (r.blotter["Z"].state, r.blotter["Z2"].state) == (S.REPLACED, S.ACKNOWLEDGED)
    assert r.risk.exposure["MSFT"].open_sell == 200
    with pytest.raises(GatewayError, match="already in use"):
        r.replace("Z2", "Z")


def test_a_reduction_is_pending_until_the_venue_answers_it_and_a_queued_order_leaves_smaller():
    v, now = FakeConnector("v1"), [1_000_000_000]
    r = Router([v], throttle=Throttle(per_venue=1), clock=lambda: now[0])
    r.submit_many([Order("A", "AAPL", Side.BUY, 100, PX), Order("Q", "AAPL", Side.BUY, 100, PX)])
    r.poll()
    r.cancel("A", 40)  # reduce to 40 open shares
    assert v.cancels == [("A", 40)] and (r.blotter["A"].state, r.blotter["A"].reduce_to) == (S.ACKNOWLEDGED, 40)
    with pytest.raises(GatewayError, match="already pending"):
        r.cancel("A", 30)
    r.cancel("A")  # a full cancel after it: the reduction's answer comes first and leaves it pending
    v.events.append(Cancelled("A", 60, "U", 9))
    r.poll()
    assert (r.blotter["A"].state, r.blotter["A"].leaves_qty, r.blotter["A"].reduce_to) == (S.CANCEL_PENDING, 40, 0)
    v.events.append(Cancelled("A", 40, "U", 10))
    r.poll()
    assert r.blotter["A"].state is S.CANCELLED
    r.cancel("Q", 30)  # still held by the throttle: it will leave with 30 shares
    assert v.cancels[-1] == ("A", 0) and r.blotter["Q"].state is S.PENDING_NEW
    assert r.risk.exposure["AAPL"].open_buy == 30
    now[0] += 2_000_000_000  # its slot has come
    r.poll()
    r.poll()  # its ack
    assert [o.qty for o in v.sent if o.cl_ord_id == "Q"] == [30] and r.blotter["Q"].leaves_qty == 30
    assert r.settled()


def test_replace_is_risk_checked():
    v = FakeConnector()
    r = Router([v], risk=RiskEngine(RiskLimits(max_qty=500)))
    r.submit(Order("A", "AAPL", Side.BUY, 100, PX))
    r.poll()
    with pytest.raises(GatewayError, match="max_qty"):
        r.replace("A", "A2", qty=501)
    assert v.replaces == []


def test_kill_switch_cancels_everything_halts_new_orders_lets_cancels_through():
    v = FakeConnector()
    r = Router([v], throttle=Throttle(per_venue=2))
    r.submit_many([Order(f"K{i}", "AAPL", Side.BUY, 100, PX) for i in range(4)])
    r.poll()
    assert len(v.sent) == 2 and r.throttle.queued == 2
    r.kill("test")
    assert v.mass_cancels == [None]
    assert r.throttle.queued == 0
    assert [r.blotter[f"K{i}"].state for i in (2, 3)] == [S.CANCELLED, S.CANCELLED]
    r.poll()
    assert [r.blotter[f"K{i}"].state for i in (0, 1)] == [S.CANCELLED, S.CANCELLED]
    (rec,) = r.submit(Order("N", "AAPL", Side.BUY, 100, PX))
    assert (rec.state, rec.reason) == (S.DENIED, "kill_switch")
    assert len(v.sent) == 2
    s = r.summary()
    assert s["kill_switch"] and s["cancelled"] == 4 and s["open"] == 0 and s["denied"] == {"kill_switch": 1}
    assert r.risk.exposure["AAPL"].open_orders == 0 and r.risk.exposure["AAPL"].open_buy == 0
    r.resume()
    (rec,) = r.submit(Order("N2", "AAPL", Side.BUY, 100, PX))
    assert rec.state is S.PENDING_NEW  # accepted (waiting for its throttle slot)


def test_kill_switch_cancels_on_a_venue_that_reconnects():
    r, a, b = two_venues()
    b.drop()
    r.poll()
    r.kill()
    assert (a.mass_cancels, b.mass_cancels) == ([None], [])
    b._connected = True
    b.events.append(SessionEvent("connected", "", 5))
    r.poll()
    assert b.mass_cancels == [None]


def test_kill_switch_on_a_signal():
    v = FakeConnector()
    r = Router([v])
    old = signal.getsignal(signal.SIGUSR1)
    try:
        r.install_signal()
        r.submit(Order("A", "AAPL", Side.BUY, 100, PX))
        os.kill(os.getpid(), signal.SIGUSR1)
        r.poll()
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert r.risk.killed and r.risk.kill_reason == "signal SIGUSR1"
    assert v.mass_cancels == [None]


def test_illegal_event_is_counted_not_fatal():
    v = FakeConnector(auto_ack=False)
    r = Router([v])
    r.submit(Order("A", "AAPL", Side.BUY, 100, PX))
    v.reject("A", "halted")
    v.events.append(Expired("A", 9))
    r.poll()
    s = r.summary()
    assert s["rejected"] == {"halted": 1}
    assert s["errors"]["illegal_transition"] == 1
    assert "illegal transition rejected -> expired" in r.last_error


def test_summary_has_the_agreed_keys_and_flattens_for_metrics():
    r, _, _ = two_venues()
    s = r.summary()
    for k in ("orders", "sent", "acked", "filled", "partially_filled", "cancelled", "rejected", "denied",
              "throttled", "latency_ns"):
        assert k in s
    flat = stats_for_metrics(s)
    assert flat["kill_switch"] == 0 and "latency_send_ack_p50_ns" in flat


def test_kill_switch_and_metrics_on_the_metrics_port():
    import urllib.request

    from xdpgw.orders.control import ControlServer, request_kill

    v = FakeConnector()
    r = Router([v])
    srv = ControlServer(0, r.request_kill)
    try:
        r.submit(Order("A", "AAPL", Side.BUY, 100, PX))
        r.poll()
        srv.update(r.summary())
        with urllib.request.urlopen(srv.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'xdpgw_router_stat{name="acked"} 1.0' in text
        with urllib.request.urlopen(srv.url + "/status", timeout=5) as resp:
            assert json.loads(resp.read())["acked"] == 1
        assert "requested" in request_kill(srv.url)
        r.poll()
    finally:
        srv.close()
    assert r.risk.killed and r.risk.kill_reason.startswith("kill switch via http")
    assert v.mass_cancels == [None]
    with pytest.raises(GatewayError, match="cannot reach the router"):
        request_kill(srv.url, timeout=1)
