"""Vectorised synthetic ITCH traffic: N MoldUDP64 packets of a realistic message mix in one buffer.

For generators, benchmarks and tests. Everything is numpy (no per-message Python), so a generator
can build millions of messages per second.
"""

from __future__ import annotations

import numpy as np

from xdpgw.batch import Batch
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import HEADER_SIZE, session_bytes

#: The benchmark mix: A 40%, D 35%, U 10%, E 5%, X 5%, the rest 5% (spread over the other 18 types).
REALISTIC_MIX: dict[str, float] = {"A": 0.40, "D": 0.35, "U": 0.10, "E": 0.05, "X": 0.05}
_REST = [t for t in itch.TYPES if t not in REALISTIC_MIX]
REALISTIC_MIX.update({t: 0.05 / len(_REST) for t in _REST})

_SYMBOLS = np.array([s.ljust(8).encode() for s in
                     ("AAPL", "MSFT", "AMZN", "NVDA", "GOOGL", "META", "TSLA", "IVOO", "SPY", "QQQ")], "S8")


def random_records(msg_type: str, n: int, rng: np.random.Generator, ts_start: int = 34_200_000_000_000,
                   ) -> np.ndarray:
    """``n`` plausible records of one type (random numbers, symbols from a small list, letters)."""
    dt = itch.DTYPES[msg_type]
    recs = np.zeros(n, dtype=dt)
    for name in dt.names:
        kind = dt[name]
        if kind.kind == "S":
            if name == "stock":
                recs[name] = _SYMBOLS[rng.integers(0, len(_SYMBOLS), n)]
            elif kind.itemsize == 1:
                recs[name] = rng.choice(np.array([b"B", b"S", b"Y", b"N"], "S1"), n)
            else:
                recs[name] = b" " * kind.itemsize
        elif name in itch.PRICE4:
            recs[name] = rng.integers(1, 5_000_000, n)
        else:
            recs[name] = rng.integers(0, min(np.iinfo(kind.newbyteorder("=")).max, 1 << 40), n,
                                      dtype=np.uint64)
    recs["type"] = msg_type.encode()
    recs["locate"] = rng.integers(1, 9000, n)
    ts = ts_start + np.arange(n, dtype=np.uint64) * np.uint64(137)
    recs["ts_hi"] = ts >> np.uint64(32)
    recs["ts_lo"] = ts & np.uint64(0xFFFFFFFF)
    return recs


def synth_packets(n_packets: int, msgs_per_packet: tuple[int, int] = (20, 30), first_seq: int = 1,
                  session: str | bytes = "SESSION001", mix: dict[str, float] | None = None, seed: int = 0,
                  ) -> tuple[Batch, np.ndarray]:
    """``n_packets`` consecutive downstream packets as one ``Batch``; also returns the type letters.

    The second value is a uint8 array of every message's type code in sequence order.
    """
    rng = np.random.default_rng(seed)
    mix = mix or REALISTIC_MIX
    types = list(mix)
    probs = np.array([mix[t] for t in types], dtype=float)
    per_pkt = rng.integers(msgs_per_packet[0], msgs_per_packet[1] + 1, n_packets)
    nmsg = int(per_pkt.sum())
    codes = np.array([ord(t) for t in types], np.uint8)[rng.choice(len(types), nmsg, p=probs / probs.sum())]
    sizes = itch.SIZE_TABLE[codes].astype(np.int64)
    pkt_of = np.repeat(np.arange(n_packets), per_pkt)
    # byte position of each block: 20 per packet header before it plus all earlier blocks
    block = sizes + 2
    pos = np.zeros(nmsg, np.int64)
    np.cumsum(block[:-1], out=pos[1:])
    pos += HEADER_SIZE * (pkt_of + 1)
    pkt_len = HEADER_SIZE + np.bincount(pkt_of, weights=block, minlength=n_packets).astype(np.int64)
    offsets = np.zeros(n_packets, np.int64)
    np.cumsum(pkt_len[:-1], out=offsets[1:])
    buf = np.zeros(int(pkt_len.sum()), np.uint8)
    hdr = np.zeros(n_packets, np.dtype([("s", "S10"), ("q", ">u8"), ("c", ">u2")]))
    hdr["s"] = session_bytes(session)
    first = np.zeros(n_packets, np.int64)
    np.cumsum(per_pkt[:-1], out=first[1:])
    hdr["q"] = first_seq + first
    hdr["c"] = per_pkt
    buf[offsets[:, None] + np.arange(HEADER_SIZE)] = hdr.view(np.uint8).reshape(n_packets, HEADER_SIZE)
    buf[pos] = (sizes >> 8).astype(np.uint8)
    buf[pos + 1] = (sizes & 0xFF).astype(np.uint8)
    for t in types:
        sel = np.flatnonzero(codes == ord(t))
        if len(sel):
            size = itch.SIZES[t]
            recs = random_records(t, len(sel), rng)
            buf[(pos[sel] + 2)[:, None] + np.arange(size)] = recs.view(np.uint8).reshape(len(sel), size)
    batch = Batch(buf, offsets, pkt_len.astype(np.uint32), np.zeros(n_packets, np.uint64), n_packets)
    return batch, codes


def split_batch(batch: Batch, size: int, kept: np.ndarray | None = None) -> list[Batch]:
    """Bursts of at most ``size`` packets sharing ``batch.buf`` (as a receiver would hand them over).

    ``kept`` (a mask over the packets): only those, each burst still covering ``size`` packets of the
    original stream (as a lossy receiver hands them over; a burst may be empty)."""
    if kept is None:
        return [batch.slice(i, i + size) for i in range(0, batch.count, size)]
    out = []
    for i in range(0, batch.count, size):
        sel = np.flatnonzero(kept[i : i + size]) + i
        out.append(Batch(batch.buf, batch.offsets[sel], batch.lengths[sel], batch.ts_ns[sel], len(sel)))
    return out
