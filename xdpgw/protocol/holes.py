"""Bookkeeping for the sequencer's holes and given-up ranges, in O(change) per burst (sans-IO, numpy).

Both tables hold disjoint ``[start, end)`` sequence ranges in increasing order in numpy columns with
spare room after the last row: appending, dropping a prefix and rewriting rows near the end cost what
changes, never the whole table, so a long backlog of holes (a lossy line waiting out its window) does
not make every burst slower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_I64 = np.dtype(np.int64)
_NONE = {k: np.zeros(0) for k in ("start", "end", "since", "last", "attempts")}


@dataclass(slots=True)
class Hole:
    """Sequences ``[start, end)`` not received yet (a snapshot row of :class:`HoleTable`)."""

    start: int
    end: int
    since: float
    last_request: float | None = None
    attempts: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


class _Columns:
    """Named numpy columns; rows ``[h0, h1)`` are live, with room to grow after ``h1``."""

    _DTYPES: dict[str, np.dtype] = {}

    def __init__(self, capacity: int = 64) -> None:
        self._c = {k: np.empty(capacity, dt) for k, dt in self._DTYPES.items()}
        self._h0 = self._h1 = 0

    def __len__(self) -> int:
        return self._h1 - self._h0

    def col(self, name: str) -> np.ndarray:
        """The live rows of one column (a view: writes go to the table)."""
        return self._c[name][self._h0 : self._h1]

    def clear(self) -> None:
        self._h0 = self._h1 = 0

    def _room(self, rows: int) -> None:
        """Make room for ``rows`` live rows from ``_h0`` on (moves or grows, amortised O(1) per row)."""
        cap = len(self._c["start"])
        if self._h0 + rows <= cap:
            return
        n = len(self)
        new_cap = cap if rows <= cap // 2 else max(2 * cap, 2 * rows)
        for k, a in self._c.items():
            b = a if new_cap == cap else np.empty(new_cap, a.dtype)
            b[:n] = a[self._h0 : self._h1]
            self._c[k] = b
        self._h0, self._h1 = 0, n

    def _replace(self, i: int, j: int, new: dict[str, np.ndarray]) -> None:
        """Rows ``[i, j)`` (live indices) become ``new``; rows after ``j`` move (O(rows after j + new))."""
        m, n = len(new["start"]), len(self)
        delta = m - (j - i)
        if delta > 0:
            self._room(n + delta)
        h0 = self._h0
        for k, a in self._c.items():
            if delta and j < n:
                a[h0 + i + m : h0 + n + delta] = a[h0 + j : h0 + n]  # numpy copes with the overlap
            a[h0 + i : h0 + i + m] = new[k]
        self._h1 += delta

    def _append_row(self, **values: float) -> None:
        self._room(len(self) + 1)
        for k, v in values.items():
            self._c[k][self._h1] = v
        self._h1 += 1

    def _pop(self, k: int) -> dict[str, np.ndarray]:
        """Drop the first ``k`` rows; returns copies of them."""
        out = {name: a[self._h0 : self._h0 + k].copy() for name, a in self._c.items()}
        self._h0 += k
        if self._h0 == self._h1:
            self._h0 = self._h1 = 0
        return out


class HoleTable(_Columns):
    """The open holes of one session, in sequence order, with their timers.

    Columns: ``start``, ``end``, ``since`` (when its wait began), ``last`` (last retransmission request,
    NaN for never) and ``attempts``. ``total`` is the number of sequences in all holes.
    """

    _DTYPES = {"start": _I64, "end": _I64, "since": np.dtype(np.float64), "last": np.dtype(np.float64),
               "attempts": _I64}

    def __init__(self, capacity: int = 64) -> None:
        super().__init__(capacity)
        self.total = 0

    def clear(self) -> None:
        super().clear()
        self.total = 0

    def first(self) -> tuple[int, int, float]:
        """``(start, end, since)`` of the oldest hole (the table must not be empty)."""
        h = self._h0
        return int(self._c["start"][h]), int(self._c["end"][h]), float(self._c["since"][h])

    def rows(self) -> list[Hole]:
        """The holes as objects (for tests and status pages; not for the hot path)."""
        last = self.col("last").tolist()
        return [Hole(a, b, s, None if r != r else r, n) for a, b, s, r, n in zip(
            self.col("start").tolist(), self.col("end").tolist(), self.col("since").tolist(), last,
            self.col("attempts").tolist(), strict=True)]

    def extend(self, old_high: int, new_high: int, now: float) -> int | None:
        """The feed announced ``[old_high, new_high)``: a hole until filled. The hole ending at
        ``old_high``, if any, grows (keeping its timers); returns ``old_high`` then (pieces of it from
        there on are fresh, see :meth:`fill`), else None."""
        if new_high <= old_high:
            return None
        self.total += new_high - old_high
        if self._h1 > self._h0 and self._c["end"][self._h1 - 1] == old_high:
            self._c["end"][self._h1 - 1] = new_high
            return old_high
        self._append_row(start=old_high, end=new_high, since=now, last=np.nan, attempts=0)
        return None

    def append(self, starts: np.ndarray, ends: np.ndarray, size: int, now: float, joins: int | None = None,
               ) -> None:
        """New holes beyond every open one (``size`` sequences in all), waiting from ``now``. A first one
        starting at ``joins`` where the last open hole ends continues that hole instead (keeping its timers)."""
        m = len(starts)
        self.total += size
        h1 = self._h1
        if h1 > self._h0 and starts[0] == joins and self._c["end"][h1 - 1] == joins:
            self._c["end"][h1 - 1] = ends[0]
            starts, ends, m = starts[1:], ends[1:], m - 1
        if m:
            self._room(len(self) + m)
            h1 = self._h1
            c = self._c
            c["start"][h1 : h1 + m] = starts
            c["end"][h1 : h1 + m] = ends
            c["since"][h1 : h1 + m] = now
            c["last"][h1 : h1 + m] = np.nan
            c["attempts"][h1 : h1 + m] = 0
            self._h1 = h1 + m

    def first_start(self) -> int:
        return int(self._c["start"][self._h0])

    def holding(self, seqs: np.ndarray) -> np.ndarray:
        """Per sequence (int64): is it inside a hole?"""
        if not len(self):
            return np.zeros(len(seqs), bool)
        st = self.col("start")
        h = np.searchsorted(st, seqs, "right") - 1
        return (h >= 0) & (seqs < self.col("end")[np.maximum(h, 0)])

    def fill(self, seqs: np.ndarray, now: float, fresh_from: int | None = None) -> None:
        """Sequences ``seqs`` (int64, increasing, each inside a hole) arrived: cut them out.

        The piece of a hole before its first arrival keeps its wait (``since``); later pieces wait from
        ``now`` (a hole filled from its start has data coming). Pieces keep the hole's request timers,
        except those starting at or after ``fresh_from`` (new territory appended by :meth:`extend`).
        """
        if not len(seqs):
            return
        st, en = self.col("start"), self.col("end")
        n = len(seqs)
        # runs of consecutive arrivals; a run never spans two holes (holes are never adjacent)
        brk = np.flatnonzero(seqs[1:] != seqs[:-1] + 1)
        nr = len(brk) + 1
        first_i, last_i = np.empty(nr, np.int64), np.empty(nr, np.int64)
        first_i[0], first_i[1:] = 0, brk + 1
        last_i[:-1], last_i[-1] = brk, n - 1
        ra, rb = seqs[first_i], seqs[last_i] + 1
        rh = st.searchsorted(ra, "right") - 1  # the hole of each run
        if (ra == st[rh]).all() and (rb == en[rh]).all():  # every run fills its hole whole (e.g. the other line)
            self.total -= n
            i, j = int(rh[0]), int(rh[-1]) + 1
            if j - i == nr:
                self._replace(i, j, _NONE)
            else:
                stay = np.ones(j - i, bool)
                stay[rh - i] = False
                self._replace(i, j, {k: self.col(k)[i:j][stay] for k in self._DTYPES})
            return
        first = np.ones(nr, bool)
        np.not_equal(rh[1:], rh[:-1], out=first[1:])
        last = np.ones(nr, bool)
        last[:-1] = first[1:]
        touched = rh[first]
        nt = len(touched)
        # pieces, hole by hole: one before each run, one after the hole's last run
        pos_pre = first.cumsum()
        pos_pre += np.arange(-1, nr - 1)
        pos_tail = np.flatnonzero(last)
        pos_tail += np.arange(1, nt + 1)
        ps, pe = np.empty(nr + nt, np.int64), np.empty(nr + nt, np.int64)
        prev_end = np.empty(nr, np.int64)
        prev_end[0] = 0
        prev_end[1:] = rb[:-1]
        ps[pos_pre] = np.where(first, st[rh], prev_end)
        pe[pos_pre] = ra
        ps[pos_tail] = rb[last]
        pe[pos_tail] = en[touched]
        since = np.full(nr + nt, now)
        since[pos_pre[first]] = self.col("since")[touched]
        src = np.empty(nr + nt, np.int64)  # the hole each piece comes from
        src[pos_pre] = rh
        src[pos_tail] = touched
        keep = pe > ps
        if not keep.all():
            ps, pe, since, src = ps[keep], pe[keep], since[keep], src[keep]
        lastreq, attempts = self.col("last")[src], self.col("attempts")[src]
        if fresh_from is not None:
            fresh = ps >= fresh_from
            lastreq[fresh], attempts[fresh] = np.nan, 0
        self.total -= n
        i, j = int(touched[0]), int(touched[-1]) + 1
        new = {"start": ps, "end": pe, "since": since, "last": lastreq, "attempts": attempts}
        if j - i > nt:  # untouched holes between the touched ones stay, in order
            stay = np.ones(j - i, bool)
            stay[touched - i] = False
            stay = np.flatnonzero(stay) + i
            order = np.concatenate((ps, st[stay])).argsort(kind="stable")
            new = {k: np.concatenate((v, self.col(k)[stay]))[order] for k, v in new.items()}
        self._replace(i, j, new)

    def pop(self, k: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Drop the ``k`` oldest holes; returns their starts, ends and how many sequences they held."""
        h0 = self._h0
        st, en = self._c["start"][h0 : h0 + k].copy(), self._c["end"][h0 : h0 + k].copy()
        self._h0 += k
        if self._h0 == self._h1:
            self._h0 = self._h1 = 0
        size = int(en[0] - st[0]) if k == 1 else int(en.sum() - st.sum())
        self.total -= size
        return st, en, size


class RangeLog(_Columns):
    """Disjoint ranges appended in increasing order (holes given up, a line's holes): append, drop the
    ones a sequence has passed, and ask what they cover, all vectorised. With ``maxlen`` only the newest
    ``maxlen`` are kept."""

    _DTYPES = {"start": _I64, "end": _I64}

    def __init__(self, maxlen: int | None = None) -> None:
        super().__init__(64 if maxlen is None else 2 * maxlen)
        self.maxlen = maxlen

    def __iter__(self):
        return zip(self.col("start").tolist(), self.col("end").tolist(), strict=True)

    def add(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Append ranges beyond the last one."""
        if self.maxlen is not None and len(self) + len(starts) > self.maxlen:
            keep = max(0, self.maxlen - len(starts))
            self._h0 = self._h1 - min(keep, len(self))
            starts, ends = starts[-self.maxlen:], ends[-self.maxlen:]
        m = len(starts)
        self._room(len(self) + m)
        h1 = self._h1
        self._c["start"][h1 : h1 + m] = starts
        self._c["end"][h1 : h1 + m] = ends
        self._h1 = h1 + m

    def passed(self, seq: int) -> int:
        """How many of the oldest ranges end at or before ``seq``."""
        return int(np.searchsorted(self.col("end"), seq, "right"))

    def pop(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._pop(k)
        return rows["start"], rows["end"]

    def holding(self, seqs: np.ndarray) -> np.ndarray:
        """Per sequence (int64): is it inside one of the ranges?"""
        if not len(self):
            return np.zeros(len(seqs), bool)
        h = np.searchsorted(self.col("start"), seqs, "right") - 1
        return (h >= 0) & (seqs < self.col("end")[np.maximum(h, 0)])

    def overlap(self, starts: np.ndarray, ends: np.ndarray) -> int:
        """How many sequences of the disjoint ranges ``[starts, ends)`` (in order) these ranges cover."""
        if not len(self) or not len(starts):
            return 0
        st, en = self.col("start"), self.col("end")
        i0 = int(en.searchsorted(starts[0], "right"))  # ranges wholly below do not count
        i1 = int(st.searchsorted(ends[-1]))  # nor wholly above
        if i1 - i0 <= 4:  # the usual case: a few, one by one
            lost = 0
            for ga, gb in zip(st[i0:i1].tolist(), en[i0:i1].tolist(), strict=True):
                lost += int(np.maximum(np.minimum(ends, gb) - np.maximum(starts, ga), 0).sum())
            return lost
        st, en = st[i0:i1], en[i0:i1]
        cum = np.zeros(len(st) + 1, np.int64)
        np.cumsum(en - st, out=cum[1:])

        def covered_below(x: np.ndarray) -> np.ndarray:  # sequences of the ranges below x
            i = np.searchsorted(st, x, "right")
            return cum[i] - np.maximum(en[np.maximum(i - 1, 0)] - x, 0) * (i > 0)

        return int((covered_below(ends) - covered_below(starts)).sum())
