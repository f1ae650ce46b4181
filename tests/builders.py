"""Packet builders for the sans-IO protocol tests: ITCH messages that carry their sequence number, and
MoldUDP64 packets of them. One set for every protocol test (they used to define their own)."""

from __future__ import annotations

from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_packet

KINDS = "ADEXUPS"  # every message kind the builders make (sizes 36, 19, 31, 23, 35, 44, 12)


def msg(seq: int, kind: str = "D", **fields: object) -> bytes:
    """One ITCH message whose fields tell its sequence (any sequence: u64 fields take it whole); its kind is
    ``kind[seq % len(kind)]`` (one letter, or a mix such as "DAA"); ``fields`` override the defaults.
    Delete messages are on locate 2, the others on 1 or 2."""
    kind = kind[seq % len(kind)]
    low, big = seq & 0xFFFF, seq % (1 << 63)
    if kind == "S":
        return itch.encode_message("S", **{"locate": low, "tracking": low, "event_code": "O", **fields})
    defaults = {"A": dict(order_ref=big, side="B", shares=1, stock="AB", price=2),
                "D": dict(order_ref=big), "E": dict(order_ref=big, executed_shares=1, match_number=big),
                "X": dict(order_ref=big, cancelled_shares=2), "U": dict(original_order_ref=big, new_order_ref=low),
                "P": dict(order_ref=big, side="S", shares=1, stock="AB", price=2, match_number=big)}[kind]
    base = {"locate": 2 if kind == "D" else 1 + seq % 2, "tracking": low}
    return itch.encode_message(kind, **{**base, **defaults, **fields})


def pkt(seq: int, n: int = 1, session: str | bytes = "S1", kinds: str = "D") -> bytes:
    """A MoldUDP64 packet of session ``session`` carrying messages ``seq .. seq+n-1``; message ``s`` is of
    kind ``kinds[s % len(kinds)]`` (so "DAA": every third one a delete, the others adds)."""
    return encode_packet(session, seq, [msg(s, kinds) for s in range(seq, seq + n)])
