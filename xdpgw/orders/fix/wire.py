"""FIX tag=value frames as bytes (sans-IO): split, check BodyLength and CheckSum, check sequencing.

The engine (QuickFIX) writes and reads the wire; this module is how we look at what it wrote, without
trusting it: the connector turns a received message into fields with :func:`fields`, and the tests
verify the engine's message logs with :func:`frame_problem` and :func:`sequence_problems`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SOH = b"\x01"

_FRAME = re.compile(rb"8=FIX[^\x01]*\x019=\d+\x01.*?\x0110=\d{3}\x01", re.S)


def fields(raw: bytes | str) -> dict[int, str]:
    """``8=FIX.4.4|9=..|35=D|..|10=123|`` → {8: "FIX.4.4", 9: "..", 35: "D", ...}. For repeated tags
    (repeating groups) the first value wins; the messages we read carry no groups we need."""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    out: dict[int, str] = {}
    for part in text.split("\x01"):
        tag, sep, value = part.partition("=")
        if sep and tag.isdigit():
            out.setdefault(int(tag), value)
    return out


def checksum(data: bytes) -> int:
    """FIX CheckSum: the byte sum modulo 256."""
    return sum(data) & 0xFF


def frame_problem(raw: bytes) -> str | None:
    """None when ``raw`` is one well-formed frame: 8= first, 9= second with the right BodyLength
    (bytes after the 9= field up to and including the SOH before 10=), 35= third, and a 3-digit
    10= last equal to the byte sum of everything before it modulo 256. Otherwise what is wrong."""
    if not raw.startswith(b"8=FIX") or not raw.endswith(SOH):
        return "does not start with 8=FIX or end with SOH"
    first = raw.index(SOH) + 1
    second = raw.find(SOH, first) + 1
    if not raw.startswith(b"9=", first) or second <= 0:
        return "9=BodyLength is not the second field"
    tail = raw.rfind(b"\x0110=") + 1
    if tail <= 0 or len(raw) - tail != 7 or not raw[tail + 3:tail + 6].isdigit():
        return "10=CheckSum (3 digits) is not the last field"
    if not raw.startswith(b"35=", second):
        return "35=MsgType is not the third field"
    declared = int(raw[first + 2:second - 1])
    if declared != tail - second:
        return f"BodyLength {declared} but the body has {tail - second} bytes"
    declared_sum = int(raw[tail + 3:tail + 6])
    if declared_sum != checksum(raw[:tail]):
        return f"CheckSum {declared_sum:03d} but the bytes sum to {checksum(raw[:tail]):03d}"
    return None


def frames(data: bytes) -> list[bytes]:
    """Every FIX frame in ``data`` (a byte stream or an engine log with one message per line)."""
    return _FRAME.findall(data)


def sequence_problems(messages: Iterable[bytes], sender: str) -> list[str]:
    """Check the MsgSeqNum (34) of the messages ``sender`` (49) sent, in log order (either end's
    log). New messages (no PossDupFlag) take increasing numbers, never one already used; resent
    copies (43=Y) carry numbers already used or that a gap left; a SequenceReset-GapFill (35=4,
    123=Y) covers its numbers up to NewSeqNo (36); a Logon with ResetSeqNumFlag (141=Y) restarts at
    1. In the end every number up to the highest must have arrived once (fresh, resent or gap-filled).
    Returns what is wrong (empty: gap-free)."""
    problems: list[str] = []
    seen: set[int] = set()
    top = 0  # the highest number a new message took
    for raw in messages:
        f = fields(raw)
        if f.get(49) != sender:
            continue
        seq = int(f.get(34, "0"))
        if f.get(35) == "A" and f.get(141) == "Y":
            seen, top = set(), 0
        if f.get(43) == "Y":
            if seq > top:
                problems.append(f"resent message {seq} was never sent (highest new number is {top})")
        elif seq <= top:
            problems.append(f"MsgSeqNum {seq} used again (35={f.get(35)}, highest so far {top})")
        else:
            top = seq
        seen.add(seq)
        if f.get(35) == "4" and f.get(123) == "Y":
            seen.update(range(seq, int(f.get(36, seq))))
    missing = sorted(set(range(1, top + 1)) - seen)
    if missing:
        problems.append(f"MsgSeqNum {', '.join(map(str, missing[:10]))} never arrived")
    return problems
