"""ITCH 5.0 layouts, encoders and the known-good vector from the shared protocol doc."""

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdpgw.protocol import itch
from xdpgw.protocol.decode import decode_payloads
from xdpgw.protocol.moldudp64 import encode_packet

KNOWN_A = bytes.fromhex("41" "1598" "0000" "1f1aced85306" "000000000166b53e" "42" "00000640"
                        "49564f4f20202020" "000d55ac")


def test_all_23_types_with_documented_sizes():
    assert len(itch.TYPES) == 23 and set(itch.TYPES) == set("SRHYLVWKJhAFECXDUPQBINO")
    for t, dt in itch.DTYPES.items():
        assert dt.itemsize == itch.SIZES[t]
        assert all(dt[n].byteorder in ("|", ">") for n in dt.names)


def test_known_good_add_order_vector():
    rec = np.frombuffer(KNOWN_A, dtype=itch.DTYPES["A"])
    assert int(itch.timestamps(rec)[0]) == 34199999894278
    d = itch.decode_message(KNOWN_A)
    assert d == {"type": "A", "locate": 5528, "tracking": 0, "timestamp": 34199999894278,
                 "order_ref": 23508286, "side": "B", "shares": 1600, "stock": "IVOO",
                 "price": Decimal("87.3900")}
    assert itch.encode_message("A", locate=5528, timestamp=34199999894278, order_ref=23508286, side="B",
                               shares=1600, stock="IVOO", price=873900) == KNOWN_A
    dec = decode_payloads([encode_packet("S", 1, [KNOWN_A])])
    assert dec.by_type["A"]["price"][0] == 873900 and dec.by_type["A"]["stock"][0] == b"IVOO    "


def test_mwcb_levels_have_8_decimals_and_prices_accept_decimal():
    msg = itch.encode_message("V", level1=Decimal("1234.56789012"), level2=1, level3=0)
    d = itch.decode_message(msg)
    assert d["level1"] == Decimal("1234.56789012") and d["level2"] == Decimal("0.00000001")
    assert itch.decode_message(itch.encode_message("A", price="12.5"))["price"] == Decimal("12.5000")


def test_encoder_rejects_bad_input_with_advice():
    with pytest.raises(ValueError, match="use one of"):
        itch.encode_message("Z")
    with pytest.raises(ValueError, match="fields are"):
        itch.encode_message("A", nope=1)
    with pytest.raises(ValueError, match="longer than"):
        itch.encode_message("A", stock="TOOLONGSYM")


def _field_strategy(msg_type: str):
    dt = itch.DTYPES[msg_type]
    fields = {"timestamp": st.integers(0, (1 << 48) - 1)}
    for name in dt.names:
        if name in ("type", "ts_hi", "ts_lo"):
            continue
        kind = dt[name]
        if kind.kind == "S":
            fields[name] = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=kind.itemsize)
        else:
            fields[name] = st.integers(0, (1 << (8 * kind.itemsize)) - 1)
    return st.fixed_dictionaries(fields)


@pytest.mark.parametrize("msg_type", itch.TYPES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip_every_type(msg_type, data):
    fields = data.draw(_field_strategy(msg_type))
    raw = itch.encode_message(msg_type, **fields)
    assert len(raw) == itch.SIZES[msg_type]
    dec = decode_payloads([encode_packet("RT", 42, [raw, raw])])
    assert not dec.errors and list(dec.seq) == [42, 43]
    assert dec.by_type[msg_type].tobytes() == raw * 2
    got = next(dec.messages())
    for name, value in fields.items():
        want = value
        if name in itch.PRICE4:
            want = Decimal(value).scaleb(-4)
        elif name in itch.PRICE8:
            want = Decimal(value).scaleb(-8)
        assert got[name] == want, name
