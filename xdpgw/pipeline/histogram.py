"""HDR-style latency histogram: log-linear buckets in one numpy array, vectorised and mergeable.

Bucket layout (``significant_digits=2`` → 256 sub-buckets, relative error ≤ 1/256 per reported
value, well inside 1 %): values below 256 get one bucket each (exact); above, every power-of-two
range [2^k, 2^(k+1)) is cut into 128 equal buckets. The index of ``v`` is
``shift * half + (v >> shift)`` with ``shift = max(0, floor(log2 v) - sub_bits + 1)``: one frexp,
one shift, one bincount per `record_many` call, never a Python loop per value.

Values are integers in the caller's unit (nanoseconds in xdpgw), 0 .. ``highest`` (default 1e12 ns,
about 17 minutes; ~4.5 k buckets, 36 KiB). Negative or NaN values are ``rejected`` (counted, not
recorded); values above ``highest`` are ``saturated`` (recorded in the top bucket, ``max`` stays exact).

``jitter`` is defined as **p99 - p50** (the spread of the tail over the median, in the same unit):
robust to a few outliers, unlike the standard deviation, which is reported separately as ``stddev``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["LatencyHistogram", "PERCENTILES"]

#: The percentiles `LatencyHistogram.percentiles` reports, as (key, p).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
)

_MAX_HIGHEST = 1 << 53  # float64 holds every integer up to here exactly (frexp-based indexing)


class LatencyHistogram:
    """Counts of values in log-linear buckets; constant memory, mergeable, ~``10**-digits`` relative error."""

    def __init__(self, significant_digits: int = 2, highest: int = 10**12) -> None:
        if not 1 <= significant_digits <= 5:
            raise ValueError(f"significant_digits={significant_digits}: use 1..5 (2 gives ~1% error)")
        if not 1 <= highest <= _MAX_HIGHEST:
            raise ValueError(f"highest={highest}: use 1..2**53 (1e12 ns is ~17 minutes)")
        self.significant_digits = significant_digits
        self.highest = int(highest)
        self._sub_bits = math.ceil(math.log2(2 * 10**significant_digits))
        self._half = 1 << (self._sub_bits - 1)
        top_shift = max(0, self.highest.bit_length() - self._sub_bits)
        self.counts = np.zeros((top_shift + 2) * self._half, dtype=np.int64)
        self._c = None  # the C view of counts, made on first record_since
        self.reset()

    def reset(self) -> None:
        """Forget every value (keeps the bucket array)."""
        self.counts[:] = 0
        self.count = 0
        self.min = 0
        self.max = 0
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations (Chan et al. parallel variance)
        self.rejected = 0
        self.saturated = 0

    # --- bucket geometry -------------------------------------------------------------------------

    def index_of(self, values: np.ndarray) -> np.ndarray:
        """Bucket index of each value (int64 array, values already in 0..highest)."""
        v = np.asarray(values, dtype=np.int64)
        exp = np.frexp(v.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 v); v=0 -> -1
        shift = np.maximum(exp - (self._sub_bits - 1), 0)
        return shift * self._half + (v >> shift)

    def bucket_bounds(self, index: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(lowest value, width) of bucket(s) ``index``."""
        i = np.asarray(index, dtype=np.int64)
        shift = np.maximum(i // self._half - 1, 0)
        return (i - shift * self._half) << shift, np.left_shift(1, shift)

    # --- recording -------------------------------------------------------------------------------

    def record(self, value: int) -> None:
        """One value (convenience; prefer `record_many` on the hot path)."""
        self.record_many(np.array([value]))

    def record_many(self, values: np.ndarray) -> None:
        """Record an array of values in one vectorised pass."""
        v = np.asarray(values)
        if v.size == 0:
            return
        v = v.reshape(-1)
        if v.dtype.kind == "f":
            ok = v >= 0  # False for NaN too
            v = np.rint(v[ok] if not ok.all() else v)
            self.rejected += int(ok.size - v.size)
            v = np.minimum(v, float(2**62)).astype(np.int64)
        elif v.dtype.kind in "iu":
            v = v.astype(np.int64, copy=False)  # uint64 wraps above 2**63: rejected below as negative
            neg = v < 0
            if neg.any():
                self.rejected += int(neg.sum())
                v = v[~neg]
        else:
            raise TypeError(f"record_many needs a numeric array, got {v.dtype}: convert with np.asarray(x, np.int64)")
        n = int(v.size)
        if n == 0:
            return
        vmin, vmax = int(v.min()), int(v.max())
        if vmax > self.highest:
            self.saturated += int((v > self.highest).sum())
            clipped = np.minimum(v, self.highest)
        else:
            clipped = v
        idx = self.index_of(clipped)
        if n * 4 < len(self.counts):  # small burst: scatter-add beats a full-length bincount
            np.add.at(self.counts, idx, 1)
        else:
            self.counts += np.bincount(idx, minlength=len(self.counts))
        mean_b = float(v.sum(dtype=np.float64)) / n
        d = v - mean_b
        m2_b = float(d @ d)
        self._combine(n, vmin, vmax, mean_b, m2_b)

    def record_since(self, now: int, stamps: np.ndarray) -> None:
        """Record ``now - stamp`` for every non-zero stamp (a uint64 array, e.g. a burst's kernel receive
        times): the hot path, one C call per burst (no numpy temporaries), same buckets as `record_many`."""
        st = stamps if stamps.dtype == np.uint64 and stamps.flags.c_contiguous else \
            np.ascontiguousarray(stamps, dtype=np.uint64)
        if not st.size:
            return
        if self._c is None:
            from xdpgw._native._xsk import ffi, lib

            self._c = (ffi.from_buffer("int64_t[]", self.counts), ffi.new("struct xgw_hist_batch *"), ffi, lib)
        counts, out, ffi, lib = self._c
        lib.xgw_hist_since(counts, len(self.counts), self._sub_bits, self.highest, int(now),
                           ffi.from_buffer("uint64_t[]", st), st.size, out)
        self.rejected += out.rejected
        self.saturated += out.saturated
        if out.n:
            self._combine(out.n, out.min, out.max, out.mean, out.m2)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_c": None}  # the C view is remade after unpickling/copying

    def _combine(self, n: int, vmin: int, vmax: int, mean: float, m2: float) -> None:
        if self.count == 0:
            self.min, self.max = vmin, vmax
        else:
            self.min, self.max = min(self.min, vmin), max(self.max, vmax)
        total = self.count + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s values into this histogram (same layout required); returns self."""
        if (other.significant_digits, other.highest) != (self.significant_digits, self.highest):
            raise ValueError(
                "cannot merge histograms with different layouts "
                f"({other.significant_digits}, {other.highest}) vs ({self.significant_digits}, {self.highest}): "
                "create both with the same significant_digits and highest"
            )
        self.counts += other.counts
        self.rejected += other.rejected
        self.saturated += other.saturated
        if other.count:
            self._combine(other.count, other.min, other.max, other._mean, other._m2)
        return self

    # --- reading ---------------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self._mean if self.count else 0.0

    @property
    def stddev(self) -> float:
        """Population standard deviation of the recorded values (exact, not from buckets)."""
        return math.sqrt(self._m2 / self.count) if self.count else 0.0

    def _values_at(self, ps: list[float], cum: np.ndarray) -> list[int]:
        out = []
        for p in ps:
            if p <= 0:
                out.append(self.min)
                continue
            if p >= 100:
                out.append(self.max)
                continue
            rank = max(1, math.ceil(p / 100.0 * self.count - 1e-9))
            i = int(np.searchsorted(cum, rank, side="left"))
            lo, width = self.bucket_bounds(i)
            mid = int(lo) + (int(width) - 1) // 2
            out.append(min(max(mid, self.min), self.max))
        return out

    def percentile(self, p: float) -> int:
        """Value at percentile ``p`` (0..100), nearest-rank: the middle of the bucket holding the
        ceil(p/100 · count)-th smallest value (within ~1e-9 of an integer the rank is not rounded up).

        0 when empty; p <= 0 gives the exact min and p >= 100 the exact max.
        """
        if self.count == 0:
            return 0
        return self._values_at([p], np.cumsum(self.counts))[0]

    def percentiles(self) -> dict[str, float]:
        """count, min, max, mean, stddev, p50, p90, p99, p99.9, p99.99 and jitter (= p99 - p50)."""
        keys = [k for k, _ in PERCENTILES]
        if self.count:
            vals = self._values_at([p for _, p in PERCENTILES], np.cumsum(self.counts))
        else:
            vals = [0] * len(keys)
        out: dict[str, float] = {"count": self.count, "min": self.min, "max": self.max, "mean": self.mean,
                                 "stddev": self.stddev}
        out.update(zip(keys, vals, strict=True))
        out["jitter"] = out["p99"] - out["p50"]
        return out

    def __len__(self) -> int:
        return self.count

    # --- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary plus the non-empty buckets as [[lowest value, count], ...] (see `from_dict`)."""
        nz = np.flatnonzero(self.counts)
        lows, _ = self.bucket_bounds(nz)
        return {
            "unit": "ns",
            "significant_digits": self.significant_digits,
            "highest": self.highest,
            **self.percentiles(),
            "jitter_definition": "p99 - p50",
            "rejected": self.rejected,
            "saturated": self.saturated,
            "buckets": [[int(lo), int(c)] for lo, c in zip(lows, self.counts[nz], strict=True)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyHistogram:
        """Rebuild a histogram written by `to_dict` (e.g. to merge results of several runs)."""
        h = cls(int(d["significant_digits"]), int(d["highest"]))
        buckets = np.asarray(d.get("buckets") or np.zeros((0, 2)), dtype=np.int64).reshape(-1, 2)
        if len(buckets):
            np.add.at(h.counts, h.index_of(buckets[:, 0]), buckets[:, 1])
        h.count = int(d["count"])
        h.min, h.max = int(d["min"]), int(d["max"])
        h._mean = float(d["mean"])
        h._m2 = float(d["stddev"]) ** 2 * h.count
        h.rejected, h.saturated = int(d.get("rejected", 0)), int(d.get("saturated", 0))
        return h


def latency_acc(h: LatencyHistogram) -> tuple:
    """A C accumulator (``struct xgw_latency_acc``, xdpgw/_native/fastpath.h) that stamps into ``h``'s buckets;
    its running count/min/max/mean/M2 wait there until :func:`fold_latency`. Returns (struct, keep-alive)."""
    from xdpgw._native._xsk import ffi

    acc = ffi.new("struct xgw_latency_acc *")
    h.counts += 0  # touch every page of the buckets now, not on the first value that lands there
    counts = ffi.from_buffer("int64_t[]", h.counts)
    acc.counts, acc.ncounts, acc.highest, acc.sub_bits = counts, len(h.counts), h.highest, h._sub_bits
    return acc, counts


def fold_latency(acc: tuple | None, h: LatencyHistogram) -> None:
    """Move what the C accumulator ``acc`` (see :func:`latency_acc`) gathered into ``h``'s statistics."""
    if acc is None:
        return
    a = acc[0]
    h.rejected += a.rejected
    h.saturated += a.saturated
    if a.n:
        h._combine(a.n, a.min, a.max, a.mean, a.m2)
    a.n = a.rejected = a.saturated = 0
