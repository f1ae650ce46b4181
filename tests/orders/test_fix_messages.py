"""FIX frames and field mapping as pure logic (no engine, no sockets)."""

from __future__ import annotations

import pytest

from xdpgw.errors import GatewayError
from xdpgw.orders.fix import messages, wire
from xdpgw.orders.model import Order, Side, Tif, price_to_ticks
from xdpgw.orders.venue import (
    Accepted,
    Cancelled,
    CancelRejected,
    Expired,
    Filled,
    Rejected,
    Replaced,
    TradeBroken,
)

# A Heartbeat as QuickFIX writes it: body = "35=0|49=A|56=B|34=2|52=20261130-12:00:00.000|" (45 bytes),
# checksum = byte sum of "8=FIX.4.4|9=45|" + body, mod 256.
BODY = b"35=0\x0149=A\x0156=B\x0134=2\x0152=20261130-12:00:00.000\x01"
HEAD = b"8=FIX.4.4\x019=%d\x01" % len(BODY)
GOOD = HEAD + BODY + b"10=%03d\x01" % (sum(HEAD + BODY) % 256)


def test_frame_checks_accept_a_good_frame_and_name_each_fault():
    assert len(BODY) == 45 and wire.frame_problem(GOOD) is None
    assert "BodyLength 44" in wire.frame_problem(GOOD.replace(b"9=45", b"9=44"))
    bad_sum = GOOD[:-4] + b"%03d\x01" % ((int(GOOD[-4:-1]) + 1) % 256)
    assert "CheckSum" in wire.frame_problem(bad_sum)
    assert "35=MsgType" in wire.frame_problem(HEAD + b"49=A\x01" + GOOD[len(HEAD):])
    assert wire.frame_problem(GOOD[:-1]) is not None


def test_frames_are_found_in_an_engine_log():
    log = b"20261130-12:00:00.000000000 : " + GOOD + b"\n" + b"20261130-12:00:01.000000000 : " + GOOD + b"\n"
    assert wire.frames(log) == [GOOD, GOOD]
    assert wire.fields(GOOD)[35] == "0" and wire.fields(GOOD)[34] == "2"


def _msg(seq, msg_type="0", sender="A", extra=""):
    return f"8=FIX.4.4\x019=1\x0135={msg_type}\x0149={sender}\x0134={seq}\x01{extra}10=000\x01".encode()


def test_sequence_check_allows_resends_and_gap_fills_and_finds_gaps():
    ok = [_msg(1, "A"), _msg(2), _msg(1, "B", sender="Z"), _msg(3), _msg(2, "D", extra="43=Y\x01"),
          _msg(4, "4", extra="123=Y\x0136=6\x01"), _msg(6)]
    assert wire.sequence_problems(ok, "A") == []
    assert wire.sequence_problems([_msg(1), _msg(2), _msg(4)], "A") == ["MsgSeqNum 3 never arrived"]
    assert wire.sequence_problems([_msg(1), _msg(2), _msg(4), _msg(3, extra="43=Y\x01")], "A") == []  # resent
    assert "never sent" in wire.sequence_problems([_msg(1), _msg(5, extra="43=Y\x01")], "A")[0]
    assert "used again" in wire.sequence_problems([_msg(1), _msg(2), _msg(2)], "A")[0]
    assert wire.sequence_problems([_msg(1), _msg(1, "A", extra="141=Y\x01"), _msg(2)], "A") == []


def test_new_order_single_carries_our_id_side_and_exact_price():
    order = Order("H8FUB8IV", "CVLT", Side.SELL_SHORT, 225, price_to_ticks("63.02"))
    body = dict(messages.new_order_single(order))
    assert body[11] == "H8FUB8IV" and body[54] == "5" and body[38] == "225"
    assert body[40] == "2" and body[44] == "63.0200" and body[59] == "0" and body[55] == "CVLT"
    market = dict(messages.new_order_single(Order("M1", "CVLT", Side.BUY, 1, 0, Tif.IOC)))
    assert market[40] == "1" and 44 not in market and market[59] == "3"
    with pytest.raises(GatewayError, match="DAY, IOC or GTX"):
        messages.new_order_single(Order("T1", "CVLT", Side.BUY, 1, 1, Tif.GTT))


def test_prices_round_trip_and_subtick_is_flagged():
    assert messages.price_text(630200) == "63.0200" and messages.price_text(5) == "0.0005"
    assert messages.ticks_of("63.02") == (630200, True)
    assert messages.ticks_of("10.00005") == (100000, False)  # half-even
    assert messages.ticks_of("junk") == (0, False) and messages.ticks_of(None) == (0, False)


def _er(**kw):
    f = {35: "8", 37: "V1", 11: "A1", 17: "E1", 38: "100", 44: "190.0000", 151: "100", 14: "0"}
    f.update({int(k[1:]): v for k, v in kw.items()})
    return f


@pytest.mark.parametrize(("fields", "expected"), [
    (_er(t150="0", t39="0"), Accepted("A1", "V1", 100, 1900000, 7)),
    (_er(t150="F", t39="1", t32="40", t31="189.5", t851="2", t151="60", t14="40"),
     Filled("A1", 40, 1895000, "E1", "2", 7)),
    (_er(t150="2", t39="2", t32="100", t31="190"), Filled("A1", 100, 1900000, "E1", "", 7)),  # FIX 4.2
    (_er(t150="4", t39="4", t11="XCANCEL", t41="A1", t14="30", t151="0"), Cancelled("A1", 70, "canceled", 7)),
    (_er(t150="5", t39="0", t11="A2", t41="A1", t38="50", t44="191", t151="50"),
     Replaced("A1", "A2", "V1", 50, 1910000, 7)),
    (_er(t150="8", t39="8", t58="unknown symbol"), Rejected("A1", "unknown symbol", 7)),
    (_er(t150="8", t39="8", t103="3"), Rejected("A1", "OrdRejReason 3", 7)),
    (_er(t150="C", t39="C"), Expired("A1", 7)),
    (_er(t150="H", t19="E0"), TradeBroken("A1", "E0", "trade cancel", 7)),
    (_er(t150="6", t39="6"), None),
])
def test_execution_reports_map_onto_events(fields, expected):
    resolve = {"XCANCEL": "A1"}.get
    assert messages.execution_event(fields, 7, lambda w: resolve(w, w)) == expected


def test_rejects_name_the_order_they_refuse():
    cxl = {35: "9", 11: "XC", 41: "A1", 102: "1"}
    assert messages.cancel_reject_event(cxl, 7, lambda w: w) == CancelRejected("A1", "CxlRejReason 1", 7)
    session = {35: "3", 45: "5", 373: "5", 58: "Value is incorrect"}
    assert messages.reject_event(session, 7, ("D", "A1")) == Rejected("A1", "session reject 5: Value is incorrect", 7)
    business = {35: "j", 380: "3", 379: "A1"}
    assert messages.reject_event(business, 7, ("F", "A1")) == CancelRejected("A1", "business reject 3", 7)
    assert messages.reject_event(business, 7, None) is None
