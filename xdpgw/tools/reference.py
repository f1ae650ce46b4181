"""A straightforward ``struct``-based MoldUDP64 + ITCH 5.0 decoder: the yardstick and a test oracle.

One Python loop per packet and per message, one ``struct.unpack_from`` per message: what a feed
handler written the obvious way does. It must agree with :mod:`xdpgw.protocol.decode`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from xdpgw.protocol import itch

_HDR = struct.Struct(">10sQH")
_LEN = struct.Struct(">H")
_CODES = {"S1": "c", "S2": "2s", "S4": "4s", "S8": "8s", ">u2": "H", ">u4": "I", ">u8": "Q"}
STRUCTS: dict[int, tuple[struct.Struct, tuple[str, ...]]] = {}
for _t, (_name, _body) in itch.SPECS.items():
    fields = itch.HEADER + _body
    STRUCTS[ord(_t)] = (struct.Struct(">" + "".join(_CODES[f] for _, f in fields)), tuple(n for n, _ in fields))
    assert STRUCTS[ord(_t)][0].size == itch.SIZES[_t]


def decode_packets(payloads: Iterable[bytes | memoryview]) -> tuple[list[tuple], dict[str, int]]:
    """``([(seq, type letter, field tuple), ...], errors)`` for a sequence of datagrams."""
    out: list[tuple] = []
    errors: dict[str, int] = {}
    for data in payloads:
        if len(data) < 20:
            errors["short_packet"] = errors.get("short_packet", 0) + 1
            continue
        _session, seq, count = _HDR.unpack_from(data)
        pos, end, found = 20, len(data), 0
        overrun = False
        while pos < end:
            if pos + 2 > end:
                overrun = True
                break
            (n,) = _LEN.unpack_from(data, pos)
            if pos + 2 + n > end:
                overrun = True
                break
            entry = STRUCTS.get(data[pos + 2]) if n else None
            if entry is None:
                kind = "unknown_type" if n else "bad_length"
                errors[kind] = errors.get(kind, 0) + 1
            elif entry[0].size != n:
                errors["bad_length"] = errors.get("bad_length", 0) + 1
            else:
                out.append((seq + found, chr(data[pos + 2]), entry[0].unpack_from(data, pos + 2)))
            found += 1
            pos += 2 + n
        if overrun:
            errors["block_overrun"] = errors.get("block_overrun", 0) + 1
        elif found != (0 if count == 0xFFFF else count):
            errors["count_mismatch"] = errors.get("count_mismatch", 0) + 1
    return out, errors
