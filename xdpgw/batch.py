"""The data model every layer shares: a burst of UDP payloads as arrays over one byte buffer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

_EMPTY_U8 = np.zeros(0, dtype=np.uint8)


@dataclass(slots=True)
class Batch:
    """A burst of UDP payloads, described by arrays over one byte buffer (no per-packet objects).

    ``buf[offsets[i] : offsets[i] + lengths[i]]`` is payload *i*. For the XDP receiver ``buf`` is a
    view of the UMEM itself: a received batch is only valid until the receiver's next ``recv_batch``
    (the frames then go back to the kernel). Copy what you keep (``copy()``).
    ``ts_ns[i]`` is the kernel receive time of packet *i* on CLOCK_MONOTONIC (0 when unknown).
    """

    buf: np.ndarray
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # uint32
    ts_ns: np.ndarray  # uint64, CLOCK_MONOTONIC
    count: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.count < 0:
            self.count = len(self.offsets)

    def __len__(self) -> int:
        return self.count

    @classmethod
    def empty(cls) -> Batch:
        return cls(_EMPTY_U8, np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint64), 0)

    @classmethod
    def from_payloads(cls, payloads: Iterable[bytes], ts_ns: int = 0) -> Batch:
        """Pack payloads contiguously (for senders, tests and tools; not for the hot path)."""
        items = [bytes(p) for p in payloads]
        lengths = np.fromiter((len(p) for p in items), dtype=np.uint32, count=len(items))
        offsets = np.zeros(len(items), dtype=np.int64)
        if len(items) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        buf = np.frombuffer(b"".join(items), dtype=np.uint8) if items else _EMPTY_U8
        return cls(buf, offsets, lengths, np.full(len(items), ts_ns, dtype=np.uint64), len(items))

    def slice(self, start: int, stop: int | None = None) -> Batch:
        """Packets ``start`` to ``stop`` (default: the end) as a Batch over the same buffer (no copy)."""
        stop = self.count if stop is None else min(stop, self.count)
        start = min(start, stop)
        return Batch(self.buf, self.offsets[start:stop], self.lengths[start:stop], self.ts_ns[start:stop],
                     stop - start)

    def payload(self, i: int) -> memoryview:
        """Payload *i* as a memoryview into ``buf`` (debugging and tests, not the hot path)."""
        o = int(self.offsets[i])
        return memoryview(self.buf)[o : o + int(self.lengths[i])]

    def payloads(self) -> list[bytes]:
        """Every payload as bytes (copies; tests and tools only)."""
        return [bytes(self.payload(i)) for i in range(self.count)]

    def copy(self) -> Batch:
        """A compact copy that owns its bytes and outlives the receiver's next burst."""
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
        return Batch(buf, offsets, lengths, self.ts_ns[:n].copy(), n)
