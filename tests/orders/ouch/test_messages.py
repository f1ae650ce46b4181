"""OUCH 5.0 codecs: every message type both ways, the doc's worked example byte for byte, appendages."""

import pytest

from xdpgw.orders.model import Order, Side, Tif, price_to_ticks
from xdpgw.orders.ouch import messages as m

WORKED = bytes.fromhex(
    "0036 55 4f 00000071 54 000000e1 43564c5420202020 0000000000099db8 30 59 41 4e 4e "
    "4838465542384956202020202020 0006 05 02 4c494d45".replace(" ", ""))

TS = 34_200_000_000_123
SAMPLES = [
    m.EnterOrder(7, "B", 100, "AAPL", 1_902_500, "0", "Y", "A", "N", "N", "ID1", m.encode_appendage(min_qty=10)),
    m.ReplaceOrder(7, 8, 50, 1_902_600, "3", "N", "Y", "ID2"),
    m.CancelOrder(8, 0),
    m.ModifyOrder(8, "T", 40),
    m.MassCancel(9, "LIME", ""),
    m.MassCancel(10, "LIME", "MSFT", m.encode_appendage(firm="LIME")),
    m.SystemEvent(TS, "S"),
    m.OrderAccepted(TS, 7, "B", 100, "AAPL", 1_902_500, "0", "Y", 123456789012, "A", "N", "N", "L", "ID1"),
    m.OrderReplaced(TS, 7, 8, "B", 50, "AAPL", 1_902_600, "3", "N", 99, "A", "Y", "N", "L", "ID2",
                    m.encode_appendage(max_floor=100)),
    m.OrderCanceled(TS, 8, 50, "U"),
    m.OrderExecuted(TS, 8, 10, 1_902_600, "R", 2**40 + 5),
    m.OrderRejected(TS, 11, 0x06, "ID3"),
    m.BrokenTrade(TS, 8, 2**40 + 5, "E", "ID2"),
    m.CancelPending(TS, 8),
    m.CancelReject(TS, 8),
    m.OrderModified(TS, 8, "S", 30),
    m.MassCancelResponse(TS, 9, "LIME", "MSFT"),
]
DOC_LENGTHS = {m.EnterOrder: 47, m.ReplaceOrder: 40, m.CancelOrder: 9, m.ModifyOrder: 10, m.MassCancel: 19,
               m.SystemEvent: 10, m.OrderAccepted: 64, m.OrderReplaced: 68, m.OrderCanceled: 18,
               m.OrderExecuted: 36, m.OrderRejected: 29, m.BrokenTrade: 36, m.CancelPending: 13,
               m.CancelReject: 13, m.OrderModified: 18}


def test_every_type_has_a_sample():
    assert {type(s) for s in SAMPLES} == set(m.LAYOUTS)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip(msg):
    raw = m.encode(msg)
    assert raw[:1] == msg.TYPE
    assert m.decode(raw, inbound=msg.INBOUND) == msg
    assert m.encode(m.decode(memoryview(raw), inbound=msg.INBOUND)) == raw


@pytest.mark.parametrize("cls", list(DOC_LENGTHS), ids=lambda c: c.__name__)
def test_lengths_match_the_doc(cls):
    assert m.LAYOUTS[cls].length == DOC_LENGTHS[cls]


def test_worked_example_decodes():
    assert int.from_bytes(WORKED[:2], "big") == 54 and WORKED[2:3] == b"U"
    msg = m.decode(WORKED[3:], inbound=True)
    assert msg == m.EnterOrder(113, "T", 225, "CVLT", 630_200, "0", "Y", "A", "N", "N", "H8FUB8IV", b"\x05\x02LIME")
    assert m.parse_appendage(msg.appendage) == ({"firm": "LIME"}, 0)
    assert m.encode(msg) == WORKED[3:]


def test_worked_example_from_the_hot_path_encoder():
    enc = m.EnterOrderEncoder(m.encode_appendage(firm="LIME"))
    order = Order("H8FUB8IV", "CVLT", Side.SELL_SHORT, 225, price_to_ticks("63.02"), Tif.DAY)
    assert bytes(enc.frame(order, 113)) == WORKED
    # the buffer is reused: a second order overwrites it completely
    other = bytes(enc.frame(Order("X", "AAPL", Side.BUY, 1, 1), 114))
    assert m.decode(other[3:], inbound=True).cl_ord_id == "X"
    assert bytes(enc.frame(order, 113)) == WORKED


def test_appendage_every_known_tag_and_unknown_skipped():
    fields = dict(secondary_ord_ref_num=2**50, firm="ABCD", min_qty=5, customer_type="R", max_floor=100,
                  price_type="L", peg_offset=-100, post_only="P", expire_time=3600, handle_inst="I", bbo_weight="2")
    raw = m.encode_appendage(**fields)
    unknown = bytes((3, 99, 0xAA, 0xBB)) + bytes((1, 100))  # two unknown tags, one with no value
    assert m.parse_appendage(unknown + raw + unknown) == (fields, 4)


@pytest.mark.parametrize("raw", [b"\x05\x02LI", b"\x00", b"\x03\x02LIME"[:3], b"\x03\x03\x00\x01"])
def test_bad_appendage_is_an_error(raw):
    with pytest.raises(m.OuchError):
        m.parse_appendage(raw)


@pytest.mark.parametrize("raw, inbound", [
    (b"", False), (b"Q" + bytes(20), False), (b"A" + bytes(10), False),  # empty, unknown type, short
    (m.encode(SAMPLES[9]) + b"x", False),  # fixed-length message with a trailing byte
    (m.encode(SAMPLES[0]) + b"x", True),  # appendage length disagrees with the packet
    (m.encode(SAMPLES[2]), False),  # a client message read as an exchange message
])
def test_malformed_messages_are_errors(raw, inbound):
    with pytest.raises(m.OuchError):
        m.decode(raw, inbound=inbound)


def test_field_too_long_is_an_error():
    with pytest.raises(m.OuchError):
        m.encode(m.CancelOrder(2**32, 0))
    with pytest.raises(m.OuchError):
        m.encode(m.MassCancel(1, "TOOLONG", ""))


def test_reason_texts():
    assert m.reject_text(0x06) == "0x06 fat finger"
    assert m.reject_text(0x99) == "0x99"
    assert m.cancel_text("I") == "I immediate or cancel"


def test_batch_frames_equal_single_frames():
    enc = m.EnterOrderEncoder(m.encode_appendage(firm="LIME"))
    orders = [Order(f"ID{i}", ("AAPL", "MSFT", "CVLT")[i % 3], list(Side)[i % 4], 1 + i, 10_000 * i, list(Tif)[i % 5])
              for i in range(100)]
    singles = b"".join(bytes(enc.frame(o, 500 + i)) for i, o in enumerate(orders))
    assert bytes(enc.frames(orders, 500)) == singles
    assert bytes(enc.frames(orders[:3], 500)) == singles[:3 * enc.size]  # a smaller batch after a big one
    msgs = [m.decode(singles[i * enc.size + 3:(i + 1) * enc.size], inbound=True) for i in range(100)]
    assert [(x.user_ref_num, x.cl_ord_id, x.side, x.time_in_force) for x in msgs] == [
        (500 + i, o.cl_ord_id, o.side.value, o.tif.value) for i, o in enumerate(orders)]


def test_fast_path_fields_agree_with_the_layouts():
    acc, exe, can = (next(s for s in SAMPLES if type(s) is t) for t in (m.OrderAccepted, m.OrderExecuted,
                                                                          m.OrderCanceled))
    assert m.ACCEPTED_FIELDS.size == 64 and m.EXECUTED_FIELDS.size == 36 and m.CANCELED_FIELDS.size == 18
    assert m.ACCEPTED_FIELDS.unpack_from(m.encode(acc)) == (
        acc.user_ref_num, acc.quantity, acc.price, acc.order_reference_number, acc.cl_ord_id.encode().ljust(14), 0)
    assert m.EXECUTED_FIELDS.unpack_from(m.encode(exe)) == (
        exe.user_ref_num, exe.quantity, exe.price, exe.liquidity_flag.encode(), exe.match_number, 0)
    assert m.CANCELED_FIELDS.unpack_from(m.encode(can)) == (can.user_ref_num, can.quantity, can.reason.encode())
