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
        # (lowest sequence left, tick, part, its messages to keep or None for all, their sequences, offset)
        self._heap: list[tuple[int, int, Decoded, np.ndarray | None, np.ndarray, int]] = []
        self._tick = 0
        self.count = 0

    def __len__(self) -> int:
        return self.count

    @property
    def parts(self) -> int:
        return len(self._heap)

    def add(self, part: Decoded, seq: np.ndarray, sel: np.ndarray | None = None) -> None:
        """Buffer the messages ``sel`` (indices; None: all) of ``part``, whose sequences are ``seq`` (integers,
        increasing, none buffered already). Nothing is copied until they are taken."""
        if len(seq):
            heapq.heappush(self._heap, (int(seq[0]), self._tick, part, sel, seq, 0))
            self._tick += 1
            self.count += len(seq)

    def take(self, below: int) -> list[tuple[Decoded, slice | np.ndarray | None]]:
        """Remove every message with a sequence below ``below``; returns them in sequence order as
        pieces ``(part, slice or indices of it, or None for all of it)``, for one :func:`gather`."""
        heap = self._heap
        got: list[tuple[Decoded, slice | np.ndarray | None]] = []
        spans: list[tuple[int, int]] = []
        while heap and heap[0][0] < below:
            lo, tick, part, sel, seq, off = heapq.heappop(heap)
            n = len(seq)
            end = n if seq[-1] < below else int(seq.searchsorted(below))
            if sel is not None:
                got.append((part, sel[off:end]))
            else:
                got.append((part, None if off == 0 and end == n else slice(off, end)))
            spans.append((lo, int(seq[end - 1])))
            self.count -= end - off
            if end < n:
                heapq.heappush(heap, (int(seq[end]), tick, part, sel, seq, end))
        if len(got) > 1 and any(spans[k][1] > spans[k + 1][0] for k in range(len(spans) - 1)):
            # parts interleave (another line or a late packet filled holes): one gather, sorted
            picks = [p for _, p in got]
            seq = np.concatenate([d.seq if p is None else d.seq[p] for d, p in got])
            got = [(gather([d for d, _ in got], picks, order=seq.argsort(kind="stable"), clean=True), None)]
        return got

    def clear(self) -> None:
        self._heap.clear()
        self.count = 0
