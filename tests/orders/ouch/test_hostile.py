"""Bad input from either side: counted, never a crash, never a stall."""

import contextlib
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from xdpgw.orders.model import Order, Side
from xdpgw.orders.ouch import messages as m
from xdpgw.orders.ouch import soupbin as sb
from xdpgw.orders.ouch.connector import OuchConnector
from xdpgw.orders.venue import Accepted, Filled

from .conftest import collect, of, raw_venue
from .test_messages import SAMPLES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.booleans())
def test_ouch_decode_random_bytes_raises_only_ouch_error(raw, inbound):
    with contextlib.suppress(m.OuchError):
        m.decode(raw, inbound=inbound)
    with contextlib.suppress(m.OuchError):
        m.parse_appendage(raw)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=12),
       st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_packets_survive_any_read_boundaries(msgs, cuts):
    stream = b"".join(sb.encode_sequenced(m.encode(x)) for x in msgs)
    dec, got, pos, i = sb.PacketDecoder(), [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += dec.feed(stream[pos:pos + step])
        pos, i = pos + step, i + 1
    assert [m.decode(p, inbound=x.INBOUND) for (_, p), x in zip(got, msgs, strict=True)] == msgs


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_client_session_random_bytes(raw):
    s = sb.ClientSession("U1", "pw")
    s.login(0.0)
    with contextlib.suppress(sb.SoupError):
        s.receive(sb.encode_login_accepted("S", 1) + raw, 0.0)


def hostile(conn, stop):
    """Logs the client in, then sends garbage among good messages."""
    conn.recv(1024)  # the login
    good = m.encode(m.OrderAccepted(1, 1, "B", 10, "AAPL", 100, "0", "Y", 7, "A", "N", "N", "L", "G1"))
    conn.sendall(
        sb.encode_login_accepted("EVIL", 1)
        + sb.encode_sequenced(b"A" + bytes(5))  # truncated Accepted
        + sb.encode_sequenced(b"Q" + bytes(30))  # a type OUCH 5.0 (our doc) does not have
        + sb.encode_sequenced(m.encode(m.OrderExecuted(1, 99, 1, 1, "R", 1)))  # unknown UserRefNum
        + b"\x00\x00"  # a zero-length packet
        + sb.encode_unsequenced(b"junk"))
    conn.recv(1024)  # the order
    conn.sendall(sb.encode_sequenced(good) + sb.encode_sequenced(m.encode(m.OrderExecuted(1, 1, 10, 100, "R", 5))))
    stop.wait(10)


def test_connector_counts_garbage_and_goes_on():
    with raw_venue(hostile) as port:
        c = OuchConnector("evil", "127.0.0.1", port, user="U1", reconnect=False)
        try:
            c.connect(5)
            c.send(Order("G1", "AAPL", Side.BUY, 10, 100))
            evs = collect(c, lambda e: of(e, Filled))
            assert [e.cl_ord_id for e in of(evs, Accepted)] == ["G1"] and c.connected
            s = c.stats()
            # malformed: the truncated Accepted and the zero-length packet; unknown types: Q and "junk"
            assert (s["malformed"], s["unknown_types"], s["unknown_refs"]) == (2, 2, 1)
            assert s["next_sequence"] == 6  # every sequenced message counted, good or bad
        finally:
            c.close()


def test_simulator_survives_a_hostile_client(venue):
    with socket.create_connection(("127.0.0.1", venue.port)) as raw:
        raw.sendall(sb.encode_login_request("EVIL", "x", "", 0))
        bad_id = bytearray(m.encode(m.EnterOrder(1, "B", 10, "AAPL", 100, "0", "Y", "A", "N", "N", "OK")))
        bad_id[-16:-2] = b"\xff\xfe" * 7  # a ClOrdID that is not ASCII
        raw.sendall(sb.encode_unsequenced(b"") + sb.encode_unsequenced(b"Z" * 30) + sb.encode_unsequenced(b"O\x01")
                    + b"\x00\x00" + sb.packet(b"?", b"what") + sb.encode_unsequenced(bytes(bad_id)))
    c = OuchConnector("ok", "127.0.0.1", venue.port, user="U1")
    try:
        c.connect(5)
        c.send(Order("OK1", "AAPL", Side.BUY, 10, 100))
        assert of(collect(c, lambda e: of(e, Accepted)), Accepted)[0].cl_ord_id == "OK1"
    finally:
        c.close()
    stats = venue.call(lambda s: s.stats())
    assert (stats["errors"], stats["malformed"], stats["bad_messages"]) == (0, 2, 3)  # 0-length + "?"; 3 OUCH
    assert stats["accepted"] == 2  # the non-ASCII id too
    evil = venue.exchange.accounts["EVIL"].stream
    assert m.decode(evil[-1], inbound=False).cl_ord_id == "\xff\xfe" * 7  # echoed byte for byte
