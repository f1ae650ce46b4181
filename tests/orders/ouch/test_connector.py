"""OuchConnector against our simulator on loopback: orders, fills, cancels, replaces, reconnect with
replay (exactly once), heartbeats, dead peer, end of session, restore after a restart."""

import socket
import subprocess
import sys
import threading

import pytest

from xdpgw.errors import GatewayError
from xdpgw.orders.model import Order, Side, Tif
from xdpgw.orders.ouch import soupbin as sb
from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    CancelRejected,
    Connector,
    Filled,
    Rejected,
    Replaced,
    SessionEvent,
    connect_url,
)

from .conftest import collect, connector, ended, kinds, of, raw_venue, wait


def test_url_gives_an_ouch_connector(venue):
    c = connect_url(f"ouch://127.0.0.1:{venue.port}?user=U1&password=pw&firm=LIME&heartbeat=0.5&timeout=3")
    assert isinstance(c, OuchConnector) and isinstance(c, Connector)
    assert (c.user, c.firm, c.heartbeat_interval, c.timeout) == ("U1", "LIME", 0.5, 3.0)
    with pytest.raises(GatewayError, match="heartbeat"):
        connect_url(f"ouch://127.0.0.1:{venue.port}?heartbeat=x")
    with pytest.raises(GatewayError, match="6 ASCII"):
        connect_url(f"ouch://127.0.0.1:{venue.port}?user=TOOLONGUSER")


def test_orders_fills_cancel_replace_mass_cancel(venue):
    c = connector(venue.port, firm="LIME")
    try:
        c.connect(5)
        assert c.connected
        t = c.send(Order("B1", "CROSS", Side.BUY, 100, 1_010_000))  # crosses the reference: filled
        assert t > 0
        c.send(Order("B2", "MSFT", Side.BUY, 100, 500_000))  # rests
        c.send(Order("S1", "MSFT", Side.SELL_SHORT, 30, 490_000, Tif.IOC))  # takes 30 of B2 at 50.00
        c.send(Order("Z1", "MSFT", Side.BUY, 0 + 1, 1))  # rests far away
        evs = collect(c, lambda e: len(of(e, Filled)) >= 3 and len(of(e, Accepted)) >= 4)
        assert [e.cl_ord_id for e in of(evs, Accepted)] == ["B1", "B2", "S1", "Z1"]
        assert [(f.cl_ord_id, f.qty, f.price, f.liquidity) for f in of(evs, Filled)] == [
            ("B1", 100, 1_000_000, "R"), ("B2", 30, 500_000, "A"), ("S1", 30, 500_000, "R")]
        assert of(evs, Filled, "B2")[0].exec_id == of(evs, Filled, "S1")[0].exec_id
        c.replace("B2", Order("B3", "MSFT", Side.BUY, 50, 500_100))
        evs = collect(c, lambda e: of(e, Replaced))
        assert of(evs, Replaced)[0] == Replaced("B2", "B3", of(evs, Replaced)[0].venue_order_id, 50, 500_100,
                                                of(evs, Replaced)[0].ts_ns)
        c.cancel("B3", 20)  # reduce to 20
        evs = collect(c, lambda e: of(e, Cancelled))
        assert (of(evs, Cancelled)[0].qty, of(evs, Cancelled)[0].reason) == (30, "U user")
        c.cancel("B1")  # already filled: the venue refuses
        assert collect(c, lambda e: of(e, CancelRejected))[0].cl_ord_id == "B1"
        c.mass_cancel("MSFT")
        evs = collect(c, lambda e: len(of(e, Cancelled)) >= 2)
        assert sorted((e.cl_ord_id, e.qty) for e in of(evs, Cancelled)) == [("B3", 20), ("Z1", 1)]
        with pytest.raises(GatewayError, match="already sent"):
            c.send(Order("B1", "MSFT", Side.BUY, 1, 1))
        with pytest.raises(GatewayError, match="unknown"):
            c.cancel("NOPE")
        s = c.stats()
        assert (s["sent"], s["cancels"], s["replaces"], s["mass_cancels"]) == (4, 2, 1, 1)
        assert s["malformed"] == s["unknown_refs"] == 0
    finally:
        c.close()  # Logout Request: the venue lets the session go at once
    assert not c.connected
    wait(lambda: "U1" not in venue.call(lambda s: s.connected_users()))
    c.close()  # idempotent


def test_send_batch_one_write(venue):
    c = connector(venue.port)
    try:
        c.connect(5)
        orders = [Order(f"K{i}", "CROSS", Side.BUY, 10, 1_000_000 + i) for i in range(50)]
        c.send_batch(orders)
        evs = collect(c, lambda e: len(of(e, Filled)) == 50)
        assert [e.cl_ord_id for e in of(evs, Accepted)] == [o.cl_ord_id for o in orders]
        with pytest.raises(GatewayError, match="nothing was sent"):
            c.send_batch([Order("K50", "CROSS", Side.BUY, 1, 1), Order("K0", "CROSS", Side.BUY, 1, 1)])
        assert c.stats()["sent"] == 50 and c.next_user_ref_num == 51
    finally:
        c.close()


def test_tx_software_timestamps(venue):
    c = connect_url(f"ouch://127.0.0.1:{venue.port}?user=U1&tx_stamps=1")
    try:
        c.connect(5)
        sends = [c.send(Order(f"T{i}", "MSFT", Side.BUY, 1, 1 + i)) for i in range(5)]
        stamps: dict[int, int] = {}
        wait(lambda: set(sends) <= set(stamps), step=lambda: (c.poll(0.01), stamps.update(c.tx_stamps())))
        assert all(stamps[t] >= t for t in sends)  # the kernel stamps after we hand the bytes over
        assert c.stats()["tx_stamps"] >= 5 and c.stats()["tx_stamp_errors"] == 0
    finally:
        c.close()


def test_venue_rejects_with_reasons(venue):
    venue.call(lambda s: setattr(s.exchange, "symbols", {"AAPL"}))
    c = connector(venue.port)
    try:
        c.connect(5)
        c.send(Order("R1", "NOPE", Side.BUY, 10, 100))
        c.send(Order("R2", "AAPL", Side.BUY, 2_000_000, 100))
        evs = collect(c, lambda e: len(of(e, Rejected)) == 2)
        assert [(e.cl_ord_id, e.reason) for e in of(evs, Rejected)] == [
            ("R1", "0x17 invalid symbol"), ("R2", "0x1E shares exceed threshold")]
        c.replace("R1", Order("R3", "AAPL", Side.BUY, 10, 100))  # the original is not open
        assert collect(c, lambda e: of(e, Rejected))[0].cl_ord_id == "R3"
    finally:
        c.close()


def test_login_refused_is_a_clear_error():
    server = __import__("xdpgw.orders.ouch.simulator", fromlist=["VenueServer"]).VenueServer(users={"U1": "pw"})
    server.start()
    try:
        c = OuchConnector("v", "127.0.0.1", server.port, user="U1", password="wrong")
        with pytest.raises(GatewayError, match="refused the login: not authorized"):
            c.connect(5)
        c = OuchConnector("v", "127.0.0.1", server.port, user="U1", password="pw", session="OTHER")
        with pytest.raises(GatewayError, match="session not available"):
            c.connect(5)
    finally:
        server.stop()


def test_refused_on_reconnect_stops_reconnecting(venue):
    c = connector(venue.port, reconnect_delay=0.01)
    try:
        c.connect(5)
        venue.call(lambda s: setattr(s, "users", {"U1": "changed"}))
        venue.call(lambda s: s.drop("U1"))
        evs = collect(c, lambda e: [x for x in of(e, SessionEvent) if x.kind == "rejected"])
        assert kinds(evs) == ["connected", "disconnected", "rejected"]
        assert "not authorized" in of(evs, SessionEvent)[-1].detail
        assert c.poll(0.2) == [] and not c.connected
    finally:
        c.close()


def test_no_venue_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        c = OuchConnector("v", "127.0.0.1", port, user="U1", reconnect=False)
        with pytest.raises(GatewayError, match="cannot log in"):
            c.connect(2)
    with pytest.raises(GatewayError, match="not connected"):
        c.send(Order("A", "AAPL", Side.BUY, 1, 1))


def test_reconnect_replays_missed_acks_and_fills_exactly_once(venue):
    c = connector(venue.port, reconnect_delay=0.01)
    other = connector(venue.port, user="U2")
    try:
        c.connect(5)
        other.connect(5)
        c.send(Order("A1", "MSFT", Side.BUY, 100, 500_000))
        collect(c, lambda e: of(e, Accepted))
        # the venue processes A2 but the connection breaks before its ack leaves
        venue.call(lambda s: s.sever_after_next("U1"))
        c.send(Order("A2", "MSFT", Side.BUY, 100, 499_000))
        wait(lambda: "U1" not in venue.call(lambda s: s.connected_users()))
        # while U1 is away, U2 fills A1 fully and A2 partly
        other.send(Order("X1", "MSFT", Side.SELL, 150, 499_000))
        collect(other, lambda e: len(of(e, Filled)) == 2)
        evs = collect(c, lambda e: len(of(e, Filled)) >= 2 and of(e, Accepted))
        evs += c.poll(0.3)  # anything more (a duplicate) would show up here
        assert kinds(evs) == ["disconnected", "connected"]
        assert [e.cl_ord_id for e in of(evs, Accepted)] == ["A2"]
        assert [(e.cl_ord_id, e.qty) for e in of(evs, Filled)] == [("A1", 100), ("A2", 50)]
        s = c.stats()
        assert s["reconnects"] == 1 and s["disconnects"] == 1 and s["gaps"] == 0
        # and the session goes on with increasing UserRefNums
        c.cancel("A2")
        assert collect(c, lambda e: of(e, Cancelled))[0].qty == 50
    finally:
        c.close()
        other.close()


def test_restart_resumes_from_the_journal_state(venue):
    c = connector(venue.port)
    try:
        c.connect(5)
        c.send(Order("J1", "MSFT", Side.BUY, 10, 500_000))
        collect(c, lambda e: of(e, Accepted))
        state = c.session_state()
    finally:
        c.close()  # "killed": what it had applied is in ``state``
    assert state.next_user_ref_num == 2 and state.refs == {1: "J1"}
    filler = connector(venue.port, user="U2")
    c2 = connector(venue.port)
    try:
        filler.connect(5)
        filler.send(Order("F1", "MSFT", Side.SELL, 10, 500_000))
        collect(filler, lambda e: of(e, Filled))
        c2.restore(state)
        c2.connect(5)
        evs = collect(c2, lambda e: of(e, Filled))
        evs += c2.poll(0.2)
        assert [e.cl_ord_id for e in of(evs, Filled)] == ["J1"] and not of(evs, Accepted)
        c2.send(Order("J2", "MSFT", Side.BUY, 10, 1))
        assert collect(c2, lambda e: of(e, Accepted))[-1].cl_ord_id == "J2"
        assert c2.user_ref_num("J2") == 2
    finally:
        c2.close()
        filler.close()


def test_fresh_connector_learns_the_day_by_replay(venue):
    c = connector(venue.port)
    try:
        c.connect(5)
        c.send(Order("D1", "MSFT", Side.BUY, 10, 1))
        collect(c, lambda e: of(e, Accepted))
    finally:
        c.close()
    c2 = connector(venue.port)  # no journal: asks for message 1
    try:
        c2.connect(5)
        evs = collect(c2, lambda e: of(e, Accepted))
        assert of(evs, Accepted)[0].cl_ord_id == "D1"
        assert c2.next_user_ref_num == 2  # never reuses a UserRefNum the venue saw
        c2.cancel("D1")
        assert collect(c2, lambda e: of(e, Cancelled))[0].cl_ord_id == "D1"
    finally:
        c2.close()


def test_heartbeats_keep_an_idle_session_alive(venue):
    venue.call(lambda s: setattr(s, "timeout", 1.0))  # the venue drops a client silent for 1 s
    c = connector(venue.port, heartbeat_interval=0.1, timeout=1.0)
    try:
        c.connect(5)
        # idle for longer than either side's timeout (8 venue heartbeats, 0.2 s apart)
        wait(lambda: c.stats()["heartbeats_received"] >= 8 and c.stats()["heartbeats_sent"] >= 15,
             timeout=20, step=lambda: c.poll(0.05))
        assert c.connected and c.stats()["disconnects"] == 0
        wait(lambda: venue.call(lambda s: s.counts["heartbeats_received"]) >= 15)
    finally:
        c.close()


def test_dead_peer_is_detected_and_reconnected():
    def mute(conn, stop):  # logs the client in, then says nothing at all (a hung venue)
        conn.recv(1024)
        conn.sendall(sb.encode_login_accepted("MUTE", 1))

    with raw_venue(mute) as port:
        c = OuchConnector("mute", "127.0.0.1", port, user="U1", heartbeat_interval=0.05, timeout=0.3,
                          reconnect_delay=0.01)
        try:
            c.connect(5)
            evs = collect(c, lambda e: [x.kind for x in of(e, SessionEvent)][-2:] == ["disconnected", "connected"])
            assert [e.kind for e in evs] == ["connected", "disconnected", "connected"]
            assert "dead peer" in evs[1].detail
            assert c.stats()["reconnects"] == 1
        finally:
            c.close()


def test_end_of_session(venue):
    c = connector(venue.port)
    try:
        c.connect(5)
        c.send(Order("E1", "MSFT", Side.BUY, 10, 1))
        collect(c, lambda e: of(e, Accepted))
        venue.call(lambda s: s.end_session())
        evs = collect(c, ended)
        assert kinds(evs)[-1] == "ended" and not c.connected
        assert c.poll(0.2) == []  # no reconnect after the end of the session
        with pytest.raises(GatewayError, match="ended"):
            c.connect(1)
    finally:
        c.close()


def test_cli_venue_serves_and_ends_the_session():
    proc = subprocess.Popen([sys.executable, "-m", "xdpgw", "venue", "--port", "0", "--cross-at", "AAPL=190",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(line.split(" on ")[1].split(",")[0].rsplit(":", 1)[1])
        c = connect_url(f"ouch://127.0.0.1:{port}?user=U1")
        c.connect(5)
        c.send(Order("C1", "AAPL", Side.BUY, 10, 1_905_000))
        evs = collect(c, lambda e: of(e, Filled))
        assert of(evs, Filled)[0].price == 1_900_000
        proc.terminate()
        assert kinds(collect(c, ended))[-1] == "ended"
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and '"executions": 1' in out
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_requests_stuck_in_the_outbox_are_reported_when_the_link_breaks():
    """A venue that stops reading: the kernel buffers fill, the rest waits in our outbox; when the
    connection breaks, what never left is reported (Rejected / CancelRejected), never silently lost."""
    go = threading.Event()

    def deaf(conn, stop):
        conn.recv(49)
        conn.sendall(sb.encode_login_accepted("DEAF", 1))
        go.wait(10)  # reads nothing more, then closes with unread data: a reset
        conn.close()

    with raw_venue(deaf) as port:
        c = OuchConnector("deaf", "127.0.0.1", port, user="U1", reconnect=False)
        try:
            c.connect(5)
            c.send(Order("FIRST", "MSFT", Side.BUY, 1, 1))
            orders = [Order(f"B{i}", "MSFT", Side.BUY, 1, 1) for i in range(100_000)]
            for i in range(0, len(orders), 10_000):
                c.send_batch(orders[i:i + 10_000])
            c.cancel("FIRST")
            go.set()

            def down(events):
                return [x for x in of(events, SessionEvent) if x.kind == "disconnected"]

            evs = collect(c, down, timeout=10)
            rejected = {e.cl_ord_id for e in of(evs, Rejected)}
            assert rejected and all("not sent" in e.reason for e in of(evs, Rejected))
            assert [e.cl_ord_id for e in of(evs, CancelRejected)] == ["FIRST"]
            assert "not sent" in down(evs)[0].detail
            assert all(c.user_ref_num(cid) is None for cid in rejected)  # forgotten: may be sent again
            assert c.user_ref_num("FIRST") == 1 and c.stats()["unsent"] >= 2
        finally:
            go.set()
            c.close()


def test_every_venue_message_maps_to_its_event_or_is_ignored_and_the_socket_options():
    from xdpgw.orders.model import State
    from xdpgw.orders.ouch import messages as m
    from xdpgw.orders.router import Router

    stream = [m.SystemEvent(1, "S"),
              m.OrderAccepted(2, 1, "B", 100, "AAPL", 1_0000, "6", "Y", 77, "A", "N", "N", "L", "X1"),
              m.OrderExecuted(3, 1, 10, 1_0000, "A", 5),
              m.BrokenTrade(4, 1, 5, "E", "X1"),
              m.CancelPending(5, 1),
              m.OrderModified(6, 1, "B", 90),
              m.OrderCanceled(7, 1, 90, "T"),  # T: the order's time ran out (GTT)
              m.MassCancelResponse(8, 2, "", "")]

    heard = sb.PacketDecoder()
    last: list[tuple[bytes, bytes]] = []

    def serve(conn, stop):  # logs in, takes one order, answers with the whole stream, then listens
        conn.recv(1024)
        conn.sendall(sb.encode_login_accepted("RAW", 1))
        conn.recv(1024)
        conn.sendall(b"".join(sb.encode_sequenced(m.encode(x)) for x in stream) + sb.SERVER_HEARTBEAT_PACKET)
        while data := conn.recv(1024):
            last[:] = heard.feed(data)[-1:] or last

    with raw_venue(serve) as port:
        c = OuchConnector("raw", "127.0.0.1", port, user="U1", busy_poll_us=50)
        r = Router([c])
        try:
            r.connect(5)
            assert c._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert c._sock.getsockopt(socket.SOL_SOCKET, 46) == 50  # SO_BUSY_POLL
            r.submit(Order("X1", "AAPL", Side.BUY, 100, 1_0000, Tif.GTT))
            wait(lambda: r.poll(0.02) is not None and r.blotter["X1"].state.final)
            rec = r.blotter["X1"]  # Filled, then TradeBroken (the fill is void), then Expired
            assert (rec.state, rec.cum_qty, rec.broken) == (State.EXPIRED, 0, [(10, 1_0000)])
            s = r.summary()
            assert (s["expired"], s["errors"], s["event_unknown"], s["venues"]["raw"]["unknown_types"]) == (1, {}, 0, 0)
        finally:
            r.close()
        wait(lambda: last == [(sb.LOGOUT_REQUEST, b"")])  # close() logs out before it hangs up


def test_a_bounded_poll_spreads_a_burst_of_answers_over_calls_and_loses_none(venue, tmp_path):
    """``poll(max_events=N)`` parses at most about N messages' bytes: a burst of 40 IOC orders' 80
    answers, all waiting in the socket, is taken from the kernel at once but comes out over many calls,
    every ack and cancel applied once (through the router, journaled)."""
    import fcntl
    import struct
    import termios

    from xdpgw.orders.journal import Journal
    from xdpgw.orders.model import State
    from xdpgw.orders.ouch.connector import _EVENT_BYTES
    from xdpgw.orders.router import Router

    c = connector(venue.port)
    router = Router([c], journal=Journal(str(tmp_path / "j")))
    try:
        router.connect(5)
        router.submit_many([Order(f"I{i}", "MSFT", Side.BUY, 100, 1, Tif.IOC) for i in range(40)])
        answers = 40 * (3 + 64 + 3 + 18)  # framed Order Accepted + Order Canceled per order

        def waiting() -> int:
            return struct.unpack("i", fcntl.ioctl(c._sock, termios.FIONREAD, b"\0" * 4))[0]

        wait(lambda: waiting() >= answers)
        per_call = [router.poll(0, 2)]
        assert waiting() == 0  # the kernel's buffer is emptied all the same (TCP's window stays open)
        wait(router.settled, step=lambda: per_call.append(router.poll(0, 2)))
        most = (2 * _EVENT_BYTES + 67) // 21  # a read of 2 events' bytes, and the rest of a message cut by the last
        assert max(per_call) <= most and sum(per_call) >= 80  # (and the session's own events)
        assert sum(1 for n in per_call if n) >= 80 // most
        recs = [router.blotter[f"I{i}"] for i in range(40)]
        assert all(r.state is State.CANCELLED and r.ack_ns for r in recs)
        s = router.summary()
        assert (s["sent"], s["acked"], s["cancelled"], s["event_duplicates"], s["event_unknown"]) == (40, 40, 40, 0, 0)
        assert not s["errors"]
    finally:
        router.close()


def test_bounded_polls_apply_every_answer_before_the_end_of_session_that_closed_the_socket(venue):
    """Answers still unparsed when the venue ends the session and closes: the bounded polls apply them
    all, in order, then report the end (nothing dropped with the connection)."""
    c = connector(venue.port)
    try:
        c.connect(5)
        c.send_batch([Order(f"Q{i}", "MSFT", Side.BUY, 10, 1, Tif.IOC) for i in range(20)])
        venue.call(lambda s: s.end_session())
        evs: list = []
        wait(lambda: ended(evs), step=lambda: evs.extend(c.poll(0.01, 1)))
        assert [e.cl_ord_id for e in of(evs, Accepted)] == [f"Q{i}" for i in range(20)]
        assert [e.cl_ord_id for e in of(evs, Cancelled)] == [f"Q{i}" for i in range(20)]
        assert kinds(evs)[-1] == "ended" and not c.connected
    finally:
        c.close()
