"""The data model every layer shares: a burst of UDP payloads as arrays over one byte buffer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from xdpgw.errors import GatewayError

_EMPTY_U8 = np.zeros(0, dtype=np.uint8)
_ZEROS_U16 = np.zeros(1024, dtype=np.uint16)  # the fields' default: "no port known", "no headers"
_ZEROS_U16.flags.writeable = False
MAX_BURST = 1024  # UIO_MAXIOV: the most one recvmmsg takes; every receiver's burst is capped the same


def _zeros_u16(n: int) -> np.ndarray:
    """``n`` read-only zeros (a view of one shared array: nothing to allocate for the common sizes)."""
    global _ZEROS_U16
    if n > len(_ZEROS_U16):
        _ZEROS_U16 = np.zeros(n, dtype=np.uint16)
        _ZEROS_U16.flags.writeable = False
    return _ZEROS_U16[:n]


def check_burst(burst: int, limit: int = MAX_BURST) -> int:
    """A receiver's burst size (packets per receive call), validated once at construction: 1..``limit``."""
    if not 1 <= burst <= limit:
        raise GatewayError(f"batch={burst} is out of range", f"use 1..{limit} packets per burst")
    return burst


@dataclass(slots=True)
class Batch:
    """A burst of UDP payloads, described by arrays over one byte buffer (no per-packet objects).

    ``buf[offsets[i] : offsets[i] + lengths[i]]`` is payload *i*. For the XDP receiver ``buf`` is a
    view of the UMEM itself: a received batch is only valid until the receiver's next ``recv_batch``
    (the frames then go back to the kernel). Copy what you keep (``copy()``).
    ``ts_ns[i]`` is the kernel receive time of packet *i* on CLOCK_MONOTONIC (0 when unknown).

    What every receiver fills, so generic code (A/B lines, the pcap tap) has one path for any transport:
    ``dports[i]`` is the UDP destination port of packet *i* (0: unknown) and ``header_lengths[i]`` the
    Ethernet + IP + UDP bytes in ``buf`` right in front of payload *i* (0: the transport keeps no headers).
    Receivers hand over their whole preallocated arrays (no slicing per burst): like every field, read
    them up to ``count`` (``batch.dports[:batch.count]``). Left out, both are zeros.
    """

    buf: np.ndarray
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # uint32
    ts_ns: np.ndarray  # uint64, CLOCK_MONOTONIC
    count: int = field(default=-1)
    dports: np.ndarray | None = None  # uint16, at least ``count``; None: zeros
    header_lengths: np.ndarray | None = None  # uint16, at least ``count``; None: zeros

    def __post_init__(self) -> None:
        if self.count < 0:
            self.count = len(self.offsets)
        if self.dports is None:
            self.dports = _zeros_u16(self.count)
        if self.header_lengths is None:
            self.header_lengths = _zeros_u16(self.count)

    def __len__(self) -> int:
        return self.count

    @classmethod
    def empty(cls) -> Batch:
        return cls(_EMPTY_U8, np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint64), 0)

    @classmethod
    def from_payloads(cls, payloads: Iterable[bytes], ts_ns: int = 0, dport: int | Sequence[int] = 0) -> Batch:
        """Pack payloads contiguously, to UDP port ``dport`` (one for all, or one each) (for senders, tests
        and tools; not the hot path)."""
        items = [bytes(p) for p in payloads]
        lengths = np.fromiter((len(p) for p in items), dtype=np.uint32, count=len(items))
        offsets = np.zeros(len(items), dtype=np.int64)
        if len(items) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        buf = np.frombuffer(b"".join(items), dtype=np.uint8) if items else _EMPTY_U8
        dports = np.zeros(len(items), dtype=np.uint16)
        dports[:] = dport
        return cls(buf, offsets, lengths, np.full(len(items), ts_ns, dtype=np.uint64), len(items), dports)

    def slice(self, start: int, stop: int | None = None) -> Batch:
        """Packets ``start`` to ``stop`` (default: the end) as a Batch over the same buffer (no copy)."""
        stop = self.count if stop is None else min(stop, self.count)
        start = min(start, stop)
        return Batch(self.buf, self.offsets[start:stop], self.lengths[start:stop], self.ts_ns[start:stop],
                     stop - start, self.dports[start:stop], self.header_lengths[start:stop])

    def select(self, mask: np.ndarray) -> Batch:
        """The packets where ``mask`` (bool, ``count`` long) is true, in order, over the same buffer."""
        n = self.count
        return Batch(self.buf, self.offsets[:n][mask], self.lengths[:n][mask], self.ts_ns[:n][mask], -1,
                     self.dports[:n][mask], self.header_lengths[:n][mask])

    def payload(self, i: int) -> memoryview:
        """Payload *i* as a memoryview into ``buf`` (debugging and tests, not the hot path)."""
        o = int(self.offsets[i])
        return memoryview(self.buf)[o : o + int(self.lengths[i])]

    def payloads(self) -> list[bytes]:
        """Every payload as bytes (copies; tests and tools only)."""
        return [bytes(self.payload(i)) for i in range(self.count)]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(buf, offsets, lengths)`` of the first ``count`` packets as C-contiguous uint8 / int64 / uint32
        arrays for C (no copy when they already are), after the one check every C consumer relies on:
        each payload lies inside ``buf``."""
        n = self.count
        buf = self.buf
        if buf.dtype != np.uint8 or not buf.flags.c_contiguous:
            buf = np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
        offs = np.ascontiguousarray(self.offsets[:n], dtype=np.int64)
        lens = np.ascontiguousarray(self.lengths[:n], dtype=np.uint32)
        if n and (int(offs.min()) < 0 or int((offs + lens).max()) > buf.size):
            raise GatewayError("batch offsets/lengths point outside its buffer", "build batches with Batch.from_payloads")
        return buf, offs, lens

    def copy(self) -> Batch:
        """A compact copy that owns its bytes (payloads only: ``header_lengths`` 0) and outlives the
        receiver's next burst."""
        n = self.count
        lengths = self.lengths[:n].copy()
        offsets = np.zeros(n, dtype=np.int64)
        if n > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        total = int(lengths.sum()) if n else 0
        buf = np.empty(total, dtype=np.uint8)
        for i in range(n):  # copying is off the hot path by definition
            o, ln = int(self.offsets[i]), int(lengths[i])
            buf[offsets[i] : offsets[i] + ln] = self.buf[o : o + ln]
        return Batch(buf, offsets, lengths, self.ts_ns[:n].copy(), n, self.dports[:n].copy())
