"""MoldUDP64 framing (sans-IO): packet header, heartbeat, end of session, retransmission request.

A downstream packet is ``session(10) seq(u64) count(u16)`` then ``count`` blocks of ``u16 length`` +
message. ``count == 0`` is a heartbeat and ``count == 0xFFFF`` the end of session; both carry the next
expected sequence. A retransmission request is exactly the 20-byte header: session, first, count.
All integers are big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from xdpgw._native._mold import ffi, lib

HEADER_SIZE = lib.XGW_MOLD_HDR
HEARTBEAT = 0
END_OF_SESSION = 0xFFFF
MAX_COUNT = 0xFFFE
_HDR = struct.Struct(">10sQH")

# Error codes written by the C splitter (enum xgw_mold_error in xdpgw/_native/mold.h), and the counter names
# users see: the codes' lower-case tails (XGW_MOLD_SHORT_PACKET -> "short_packet").
OK, SHORT_PACKET, COUNT_MISMATCH, BLOCK_OVERRUN, UNKNOWN_TYPE, BAD_LENGTH = (
    lib.XGW_MOLD_OK, lib.XGW_MOLD_SHORT_PACKET, lib.XGW_MOLD_COUNT_MISMATCH, lib.XGW_MOLD_BLOCK_OVERRUN,
    lib.XGW_MOLD_UNKNOWN_TYPE, lib.XGW_MOLD_BAD_LENGTH)
ERROR_NAMES: dict[int, str] = {
    code: name.removeprefix("XGW_MOLD_").lower()
    for code, name in sorted(ffi.typeof("enum xgw_mold_error").elements.items()) if code != OK
}


def session_bytes(session: str | bytes) -> bytes:
    """A session id as the 10 wire bytes (ASCII, space-padded on the right)."""
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > 10:
        raise ValueError(f"MoldUDP64 session {session!r} is longer than 10 bytes: shorten it")
    return raw.ljust(10, b" ")


@dataclass(frozen=True, slots=True)
class Header:
    """A downstream packet header."""

    session: bytes
    sequence: int
    count: int

    @property
    def is_heartbeat(self) -> bool:
        return self.count == HEARTBEAT

    @property
    def is_end_of_session(self) -> bool:
        return self.count == END_OF_SESSION


def parse_header(data: bytes | memoryview) -> Header:
    """The header of one packet; ``ValueError`` when shorter than 20 bytes."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"MoldUDP64 packet of {len(data)} bytes is shorter than the 20-byte header")
    session, seq, count = _HDR.unpack_from(data)
    return Header(session, seq, count)


def encode_packet(session: str | bytes, sequence: int, messages: Iterable[bytes]) -> bytes:
    """A downstream packet carrying ``messages`` (first one has ``sequence``)."""
    msgs = list(messages)
    if len(msgs) > MAX_COUNT:
        raise ValueError(f"{len(msgs)} messages do not fit one packet: at most {MAX_COUNT}")
    parts = [_HDR.pack(session_bytes(session), sequence, len(msgs))]
    for m in msgs:
        if len(m) > 0xFFFF:
            raise ValueError(f"message of {len(m)} bytes exceeds the u16 block length")
        parts.append(struct.pack(">H", len(m)))
        parts.append(m)
    return b"".join(parts)


def encode_heartbeat(session: str | bytes, next_sequence: int) -> bytes:
    """A heartbeat: no messages, ``next_sequence`` is the next one the server will send."""
    return _HDR.pack(session_bytes(session), next_sequence, HEARTBEAT)


def encode_end_of_session(session: str | bytes, next_sequence: int) -> bytes:
    """The end-of-session marker."""
    return _HDR.pack(session_bytes(session), next_sequence, END_OF_SESSION)


@dataclass(frozen=True, slots=True)
class RetransmitRequest:
    """Ask the re-request server for ``count`` messages starting at ``first`` in ``session``."""

    session: bytes
    first: int
    count: int

    def encode(self) -> bytes:
        return _HDR.pack(session_bytes(self.session), self.first, self.count)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> RetransmitRequest:
        if len(data) != HEADER_SIZE:
            raise ValueError(f"a retransmission request is exactly 20 bytes, got {len(data)}")
        session, first, count = _HDR.unpack(bytes(data))
        return cls(session, first, count)
