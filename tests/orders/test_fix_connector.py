"""FixConnector against a real counterparty: a QuickFIX acceptor on loopback acting as the venue."""

from __future__ import annotations

import pytest

from xdpgw.errors import GatewayError
from xdpgw.orders.fix import engine, wire
from xdpgw.orders.fix.acceptor import FixVenue, free_port
from xdpgw.orders.fix.connector import FixConnector, from_url
from xdpgw.orders.model import Order, Side, Tif, price_to_ticks
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    CancelRejected,
    Expired,
    Filled,
    MemoryStore,
    Rejected,
    Replaced,
    SessionEvent,
    connect_url,
)

from .fix_rig import REFS, fix_pair, listening, threads, wait_events, wait_for


def px(text: str) -> int:
    return price_to_ticks(text)


BASKET = [  # (order, crosses the venue's reference)
    (Order("B1", "AAPL", Side.BUY, 100, px("190.50")), True),
    (Order("B2", "AAPL", Side.BUY, 200, px("189.99")), False),
    (Order("S1", "MSFT", Side.SELL, 50, px("409")), True),
    (Order("S2", "MSFT", Side.SELL, 70, px("411.25")), False),
    (Order("T1", "CVLT", Side.SELL_SHORT, 225, px("63.02")), True),
    (Order("M1", "CVLT", Side.BUY, 10, 0, Tif.IOC), True),  # market
]


def of(events, kind, cl_ord_id=None):
    return [e for e in events if isinstance(e, kind) and (cl_ord_id is None or e.cl_ord_id == cl_ord_id)]


def check_logs(venue: FixVenue, conn: FixConnector) -> list[bytes]:
    """Every frame either engine logged is well formed, and each side's numbers are gap-free."""
    ours = wire.frames(engine.message_log(conn.state_dir).read_bytes())
    theirs = wire.frames(venue.message_log().read_bytes())
    assert ours and theirs
    for raw in ours + theirs:
        assert wire.frame_problem(raw) is None, (wire.frame_problem(raw), raw)
    for log in (ours, theirs):
        assert wire.sequence_problems(log, "XDPGW") == []
        assert wire.sequence_problems(log, "VENUE") == []
    return ours


@pytest.mark.parametrize("version", ["FIX.4.4", "FIX.4.2"])
def test_basket_is_acknowledged_and_crossing_orders_filled_on_valid_wire(tmp_path, version):
    with fix_pair(tmp_path, version=version) as (venue, conn, _):
        assert isinstance(conn, FixConnector) and conn.connected
        sent = {o.cl_ord_id: conn.send(o) for o, _ in BASKET}
        events = wait_events(conn, lambda ev: len(of(ev, Accepted)) == len(BASKET)
                             and len(of(ev, Filled)) == sum(c for _, c in BASKET))
        for order, crosses in BASKET:
            (ack,) = of(events, Accepted, order.cl_ord_id)
            assert (ack.qty, ack.price) == (order.qty, order.price) and ack.venue_order_id
            assert ack.ts_ns > sent[order.cl_ord_id]
            fills = of(events, Filled, order.cl_ord_id)
            assert len(fills) == crosses
            if crosses:
                assert (fills[0].qty, fills[0].price) == (order.qty, REFS[order.symbol])
        assert sorted(conn.open_orders()) == ["B2", "S2"] and sorted(venue.open_orders()) == ["B2", "S2"]
        ours = check_logs(venue, conn)
        orders = {f[11]: f for f in map(wire.fields, ours) if f.get(35) == "D"}
        assert orders["T1"][54] == "5" and orders["T1"][44] == "63.0200" and orders["T1"][8] == version
        assert orders["M1"][40] == "1" and orders["M1"][59] == "3"
        assert conn.stats()["sent"] == len(BASKET) and venue.errors == []


def test_partial_fill_reduce_replace_cancel_and_cancel_reject(tmp_path):
    with fix_pair(tmp_path, max_fill=40) as (venue, conn, _):
        conn.send(Order("P1", "AAPL", Side.BUY, 100, px("191")))
        ev = wait_events(conn, lambda ev: of(ev, Filled))
        assert of(ev, Filled)[0].qty == 40 and conn.open_orders() == ["P1"]
        venue.set_reference("AAPL", px("195"))  # the rest no longer crosses
        conn.cancel("P1", qty=20)  # FIX has no partial cancel: a replace down to 40 + 20
        ev = wait_events(conn, lambda ev: of(ev, Cancelled))
        assert of(ev, Cancelled) == [Cancelled("P1", 40, "reduced", of(ev, Cancelled)[0].ts_ns)]
        conn.replace("P1", Order("P1b", "AAPL", Side.BUY, 80, px("180")))  # lower price: rests
        ev = wait_events(conn, lambda ev: of(ev, Replaced))
        (rep,) = of(ev, Replaced)
        assert (rep.orig_cl_ord_id, rep.cl_ord_id, rep.qty, rep.price) == ("P1", "P1b", 40, px("180"))
        assert conn.open_orders() == ["P1b"]
        conn.cancel("P1b")
        ev = wait_events(conn, lambda ev: of(ev, Cancelled))
        assert of(ev, Cancelled)[0].cl_ord_id == "P1b" and of(ev, Cancelled)[0].qty == 40
        assert conn.open_orders() == [] and venue.open_orders() == []
        with pytest.raises(GatewayError, match="not open"):
            conn.cancel("P1b")
        # a cancel racing a fill: the venue fills first, then refuses the cancel
        conn.send(Order("R1", "MSFT", Side.BUY, 10, px("400")))
        wait_events(conn, lambda ev: of(ev, Accepted))
        venue.set_reference("MSFT", px("399"))
        conn.cancel("R1")
        ev = wait_events(conn, lambda ev: of(ev, CancelRejected))
        assert of(ev, Filled, "R1") and "too late" in of(ev, CancelRejected, "R1")[0].reason
        venue.set_reference("MSFT", REFS["MSFT"])
        conn.send(Order("E1", "MSFT", Side.BUY, 10, px("400")))
        wait_events(conn, lambda ev: of(ev, Accepted))
        venue.end_of_day()
        ev = wait_events(conn, lambda ev: of(ev, Expired))
        assert [e.cl_ord_id for e in of(ev, Expired)] == ["E1"] and conn.open_orders() == []
        check_logs(venue, conn)
        assert venue.errors == []


def test_rejects_from_the_venue_its_engine_and_us(tmp_path):
    with fix_pair(tmp_path) as (venue, conn, _):
        conn.send(Order("U1", "ZZZZ", Side.BUY, 1, px("1")))  # the venue does not list it
        ev = wait_events(conn, lambda ev: of(ev, Rejected))
        assert of(ev, Rejected)[0] == Rejected("U1", "unknown symbol ZZZZ", of(ev, Rejected)[0].ts_ns)
        with pytest.raises(GatewayError, match="already in use"):
            conn.send(Order("U1", "AAPL", Side.BUY, 1, px("1")))
        # a NewOrderSingle without OrdType: the venue's engine refuses it at session level (35=3)
        conn._send("D", [(11, "V1"), (21, "1"), (55, "AAPL"), (54, "1"), (60, "20261130-12:00:00.000"),
                         (38, "5")])
        ev = wait_events(conn, lambda ev: of(ev, Rejected))
        assert of(ev, Rejected)[0].cl_ord_id == "V1" and "session reject 1" in of(ev, Rejected)[0].reason
        assert venue.counts["rejects"] == 1 and venue.errors == []


def test_native_mass_cancel_refused_by_the_venue_falls_back_to_one_cancel_each(tmp_path):
    with fix_pair(tmp_path) as (venue, conn, _):
        native = from_url("n", "127.0.0.1", venue.port, {"sender": "XDPGW", "target": "VENUE",
                                                         "mass_cancel": "native", "dir": str(tmp_path / "us")})
        conn.close()  # the same session (same store), now asking for OrderMassCancelRequest
        with native:
            native.connect(timeout=10)
            for i in range(3):
                native.send(Order(f"Q{i}", "AAPL", Side.BUY, 5, px("100")))
            wait_events(native, lambda ev: len(of(ev, Accepted)) == 3)
            native.mass_cancel()  # 35=q: this venue answers BusinessMessageReject (35=j)
            ev = wait_events(native, lambda ev: len(of(ev, Cancelled)) == 3)
            assert native.stats()["mass_cancel_fallbacks"] == 1 and venue.open_orders() == []
            log = wire.frames(venue.message_log().read_bytes())
            assert [f[372] for f in map(wire.fields, log) if f.get(35) == "j"] == ["q"]
            assert sorted(e.cl_ord_id for e in of(ev, Cancelled)) == ["Q0", "Q1", "Q2"]


def test_session_drop_and_reconnect_resends_both_ways_and_applies_once(tmp_path):
    with fix_pair(tmp_path, link=True) as (venue, conn, link):
        conn.send(Order("A1", "AAPL", Side.BUY, 100, px("189")))  # rests
        wait_events(conn, lambda ev: of(ev, Accepted))
        link.black_hole = True  # a dead link: what is sent now is lost, both ways
        conn.send(Order("A2", "AAPL", Side.BUY, 30, px("191")))  # crosses: ack + fill lost
        venue.set_reference("AAPL", px("188"))  # fills A1: its report is lost
        assert venue.counts["fills"] == 1 and venue.counts["orders"] == 1  # A2 never arrived
        link.cut()
        link.black_hole = False
        ev = wait_events(conn, lambda ev: len(of(ev, Accepted)) == 1 and len(of(ev, Filled)) == 2)
        kinds = [e.kind for e in ev if isinstance(e, SessionEvent) and e.kind != "replayed"]
        assert kinds == ["disconnected", "connected"] and conn.stats()["reconnects"] == 1
        if not any(isinstance(e, SessionEvent) and e.kind == "replayed" for e in ev):  # the reconnect's, once caught up
            ev += wait_events(conn, lambda ev: [e for e in of(ev, SessionEvent) if e.kind == "replayed"])
        assert [e.cl_ord_id for e in of(ev, Accepted)] == ["A2"]
        assert sorted(e.cl_ord_id for e in of(ev, Filled)) == ["A1", "A2"]
        assert conn.stats()["resent_received"] >= 1
        assert conn.poll(0.2) == []  # nothing twice
        assert venue.counts["orders"] == 2 and venue.counts["fills"] == 2
        ours = check_logs(venue, conn)
        resent = [f for f in map(wire.fields, ours) if f.get(43) == "Y" and f.get(35) == "D"]
        assert [f[11] for f in resent] == ["A2"]


def test_restart_resumes_the_session_and_recovers_missed_reports(tmp_path):
    venue = FixVenue(references=dict(REFS), state_dir=tmp_path / "venue").start()
    try:
        url = venue.url(tmp_path / "us")
        with connect_url(url) as conn:
            conn.connect(timeout=10)
            conn.send(Order("R1", "AAPL", Side.BUY, 100, px("189")))
            wait_events(conn, lambda ev: of(ev, Accepted))
        venue.end_of_day()  # while we are away: stored by the venue's engine, sent on our return
        with connect_url(url) as conn:
            conn.connect(timeout=10)
            ev = wait_events(conn, lambda ev: of(ev, Expired))
            assert [e.cl_ord_id for e in of(ev, Expired)] == ["R1"] and conn.stats()["resent_received"] >= 1
        venue.stop()  # the venue restarts too, on the same store
        venue = FixVenue(references=dict(REFS), state_dir=tmp_path / "venue", port=venue.port).start()
        with connect_url(url) as conn:
            conn.connect(timeout=10)
            conn.send(Order("R2", "AAPL", Side.BUY, 1, px("191")))
            wait_events(conn, lambda ev: of(ev, Filled))
            ours = check_logs(venue, conn)
        logons = [f for f in map(wire.fields, ours) if f.get(35) == "A" and f.get(49) == "XDPGW"]
        assert len(logons) == 3 and [int(f[34]) for f in logons] == sorted(int(f[34]) for f in logons)
        assert all(f.get(141) != "Y" for f in logons) and int(logons[-1][34]) > 3  # resumed, never reset
    finally:
        venue.close()


def test_kill_switch_cancels_every_open_fix_order(tmp_path):
    with fix_pair(tmp_path) as (venue, conn, _):
        resting = [Order(f"K{i}", sym, Side.BUY, 10 + i, px("100")) for i, sym in enumerate(["AAPL", "MSFT"] * 3)]
        for order in resting:
            conn.send(order)
        wait_events(conn, lambda ev: len(of(ev, Accepted)) == len(resting))
        conn.mass_cancel("AAPL")
        ev = wait_events(conn, lambda ev: len(of(ev, Cancelled)) == 3)
        assert sorted(e.cl_ord_id for e in of(ev, Cancelled)) == ["K0", "K2", "K4"]
        assert sorted(venue.open_orders()) == ["K1", "K3", "K5"]
        conn.mass_cancel()
        ev = wait_events(conn, lambda ev: len(of(ev, Cancelled)) == 3)
        assert {e.cl_ord_id: e.qty for e in of(ev, Cancelled)} == {"K1": 11, "K3": 13, "K5": 15}
        assert venue.open_orders() == [] and conn.open_orders() == [] and conn.stats()["cancels"] == 6


def test_after_a_restart_cancels_and_mass_cancel_reach_orders_sent_before_it(tmp_path):
    with fix_pair(tmp_path) as (venue, first, _):
        for i in range(3):
            first.send(Order(f"O{i}", "AAPL", Side.BUY, 10, px("100")))
        wait_events(first, lambda ev: len(of(ev, Accepted)) == 3)
        first.cancel("O0", qty=4)  # a reduction (a replace with our own id) before the restart
        first.replace("O1", Order("O1b", "AAPL", Side.BUY, 20, px("99")))
        wait_events(first, lambda ev: of(ev, Cancelled) and of(ev, Replaced))
        first.close()
        with connect_url(venue.url(tmp_path / "us")) as again:  # same store, same logs
            again.connect(timeout=10)
            assert sorted(again.open_orders()) == ["O0", "O1b", "O2"]
            with pytest.raises(GatewayError, match="already in use"):
                again.send(Order("O2", "AAPL", Side.BUY, 1, px("1")))
            again.mass_cancel()
            ev = wait_events(again, lambda ev: len(of(ev, Cancelled)) == 3)
            assert {e.cl_ord_id: e.qty for e in of(ev, Cancelled)} == {"O0": 4, "O1b": 20, "O2": 10}
            assert venue.open_orders() == [] and again.open_orders() == []


def test_what_the_engine_took_in_but_the_router_never_journaled_is_asked_for_again(tmp_path):
    journal = MemoryStore()  # stands in for the router's journal (it hands connectors a SessionStore)
    with fix_pair(tmp_path) as (venue, first, _):
        first.store = journal
        first.send(Order("J1", "AAPL", Side.BUY, 100, px("189")))
        wait_events(first, lambda ev: of(ev, Accepted))
        kept = int(journal.get("fix_next_in"))
        venue.set_reference("AAPL", px("188"))  # the fill reaches our engine...
        wait_for(lambda: first._inbox, what="the fill at our engine")
        first.close()  # ...but the router dies before it polls: the event never reaches its journal
        with connect_url(venue.url(tmp_path / "us")) as again:
            again.store = journal
            again.connect(timeout=10)
            ev = wait_events(again, lambda ev: of(ev, Filled))
            assert [e.cl_ord_id for e in of(ev, Filled)] == ["J1"] and again.stats()["resumed_from"] == kept
            assert int(journal.get("fix_next_in")) > kept and again.stats()["resent_received"] >= 1


def test_a_venue_that_starts_over_needs_reset_and_says_so(tmp_path):
    with fix_pair(tmp_path) as (venue, conn, _):
        for i in range(20):
            conn.send(Order(f"D{i}", "AAPL", Side.BUY, 1, px("100")))
        wait_events(conn, lambda ev: len(of(ev, Accepted)) == 20)
    with FixVenue(references=dict(REFS), state_dir=tmp_path / "new-day") as fresh:  # its numbers start at 1
        with connect_url(fresh.url(tmp_path / "us")) as stale, pytest.raises(GatewayError, match="reset=1") as err:
            stale.connect(timeout=2)
        assert "MsgSeqNum too low" in str(err.value)
        with connect_url(fresh.url(tmp_path / "us") + "&reset=1") as again:
            again.connect(timeout=10)
            again.send(Order("N1", "AAPL", Side.BUY, 1, px("191")))
            wait_events(again, lambda ev: of(ev, Filled))
        logons = [f for f in map(wire.fields, wire.frames(fresh.message_log().read_bytes()))
                  if f.get(35) == "A" and f.get(49) == "XDPGW"]
        assert logons[-1][141] == "Y" and logons[-1][34] == "1"


def test_url_and_connect_errors_say_what_to_do(tmp_path):
    with pytest.raises(GatewayError, match="sender=OURCOMPID"):
        from_url("v", "127.0.0.1", 1, {"target": "T"})
    with pytest.raises(GatewayError, match="FIX.4.4"):
        from_url("v", "127.0.0.1", 1, {"sender": "S", "target": "T", "version": "FIX.5.0"})
    before = threads()
    port = free_port()
    conn = connect_url(f"fix://127.0.0.1:{port}?sender=S&target=T&dir={tmp_path}")
    with pytest.raises(GatewayError, match="did not log on") as err:
        conn.connect(timeout=1)
    assert "check the venue is up" in str(err.value) and not conn.connected
    conn.close()
    assert threads() <= before and not listening(port)
    with pytest.raises(GatewayError, match="not logged on"):
        conn.send(Order("N1", "AAPL", Side.BUY, 1, 1))
