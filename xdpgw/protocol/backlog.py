"""The sequencer's buffer: messages received but not deliverable yet (a hole comes before them).

Kept as the parts they arrived in, never merged: each part is sorted by sequence without repeats and
no sequence is in two parts. Adding a part is O(1); taking everything below a sequence costs what is
taken plus the parts it comes from (a heap by each part's lowest sequence left), so a long backlog
behind a hole costs nothing per burst while it waits.
"""

from __future__ import annotations

import heapq

import numpy as np

from xdpgw.protocol.decode import Decoded, gather


class Backlog:
    """Buffered messages by part; ``len()`` is the number of messages."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Decoded, np.ndarray, int]] = []  # (lowest seq left, tick, part, seq, offset)
        self._tick = 0
        self.count = 0

    def __len__(self) -> int:
        return self.count

    @property
    def parts(self) -> int:
        return len(self._heap)

    def add(self, part: Decoded, seq: np.ndarray) -> None:
        """Buffer ``part``, whose sequences are ``seq`` (int64, increasing, none buffered already)."""
        if len(seq):
            heapq.heappush(self._heap, (int(seq[0]), self._tick, part, seq, 0))
            self._tick += 1
            self.count += len(seq)

    def take(self, below: int) -> list[tuple[Decoded, slice | None]]:
        """Remove every message with a sequence below ``below``; returns them in sequence order as
        pieces ``(part, slice of it or None for all of it)``, for one :func:`gather` by the caller."""
        heap = self._heap
        got: list[tuple[Decoded, slice | None]] = []
        spans: list[tuple[int, int]] = []
        while heap and heap[0][0] < below:
            lo, tick, part, seq, off = heapq.heappop(heap)
            n = len(seq)
            end = n if seq[-1] < below else int(seq.searchsorted(below))
            got.append((part, None if off == 0 and end == n else slice(off, end)))
            spans.append((lo, int(seq[end - 1])))
            self.count -= end - off
            if end < n:
                heapq.heappush(heap, (int(seq[end]), tick, part, seq, end))
        if len(got) > 1 and any(spans[k][1] > spans[k + 1][0] for k in range(len(spans) - 1)):
            # parts interleave (another line or a late packet filled holes): one gather, sorted
            picks = [p for _, p in got]
            seq = np.concatenate([d.seq if p is None else d.seq[p] for d, p in got])
            got = [(gather([d for d, _ in got], picks, order=np.argsort(seq, kind="stable")), None)]
        return got

    def clear(self) -> None:
        self._heap.clear()
        self.count = 0
