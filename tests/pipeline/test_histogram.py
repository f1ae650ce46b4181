"""LatencyHistogram against numpy's exact percentiles, within the bucket error."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdpgw.pipeline.histogram import PERCENTILES, LatencyHistogram

REL = 1 / 256  # bucket half-width relative to its lowest value, for significant_digits=2


def exact(values: np.ndarray, p: float) -> float:
    """Nearest-rank percentile with exact rank arithmetic: numpy's method="inverted_cdf" computes the
    rank in floating point (99.9% of 200 000 -> 199800.00000000003 -> rank 199801), off by one."""
    rank = max(1, math.ceil(Fraction(str(p)) * len(values) / 100))
    return float(np.sort(values)[rank - 1])


def assert_close(got: float, want: float, rel: float = REL) -> None:
    assert abs(got - want) <= rel * want + 1, (got, want)


def test_reference_agrees_with_numpy_where_numpy_rounds_right() -> None:
    values = np.arange(1, 1001)
    for p in (1.0, 25.0, 50.0, 90.0, 99.0):
        assert exact(values, p) == np.percentile(values, p, method="inverted_cdf")


def test_small_values_are_exact() -> None:
    values = np.random.default_rng(0).integers(0, 256, 10_000)
    h = LatencyHistogram()
    h.record_many(values)
    for _, p in PERCENTILES:
        assert h.percentile(p) == exact(values, p)
    assert h.percentile(0) == values.min() and h.percentile(100) == values.max()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lognormal_latencies_match_numpy_within_bucket_error(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(mean=9.0, sigma=1.5, size=200_000).astype(np.int64) + 1  # ~8 us, long tail
    h = LatencyHistogram()
    for chunk in np.array_split(values, 37):
        h.record_many(chunk)
    for _, p in [*PERCENTILES, ("p1", 1.0), ("p75", 75.0)]:
        assert_close(h.percentile(p), exact(values, p))
    s = h.percentiles()
    assert s["count"] == len(values) and s["min"] == values.min() and s["max"] == values.max()
    assert s["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert s["stddev"] == pytest.approx(values.std(), rel=1e-6)
    assert s["jitter"] == s["p99"] - s["p50"]
    for key, p in PERCENTILES:
        assert s[key] == h.percentile(p)


def test_relative_error_below_one_percent_across_the_range() -> None:
    values = np.unique(np.logspace(0, 12, 5000).astype(np.int64))
    h = LatencyHistogram()
    idx = h.index_of(values)
    lo, width = h.bucket_bounds(idx)
    assert ((lo <= values) & (values < lo + width)).all()
    assert (width <= np.maximum(1, lo // 128)).all()
    assert len(h.counts) < 5000  # constant memory: ~4.4 k buckets for 1 ns .. 1e12 ns


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12), st.sampled_from([1, 2, 3]))
def test_every_value_lands_in_a_bucket_that_contains_it(v: int, digits: int) -> None:
    h = LatencyHistogram(significant_digits=digits)
    i = int(h.index_of(np.array([v]))[0])
    lo, width = (int(x) for x in h.bucket_bounds(i))
    assert 0 <= i < len(h.counts) and lo <= v < lo + width
    assert width == 1 or width <= lo / (10**digits)


def test_merge_equals_recording_everything() -> None:
    rng = np.random.default_rng(5)
    a_vals, b_vals = rng.integers(1, 10**7, 5000), rng.integers(10**5, 10**9, 3000)
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    a.record_many(a_vals)
    b.record_many(b_vals)
    both.record_many(np.concatenate([a_vals, b_vals]))
    a.merge(b)
    assert (a.counts == both.counts).all()
    assert a.percentiles() == pytest.approx(both.percentiles(), rel=1e-9)
    with pytest.raises(ValueError, match="same significant_digits"):
        a.merge(LatencyHistogram(significant_digits=3))
    assert LatencyHistogram().merge(a).count == a.count


def test_single_record_matches_record_many() -> None:
    values = [0, 1, 255, 256, 257, 1000, 123_456_789]
    one, many = LatencyHistogram(), LatencyHistogram()
    for v in values:
        one.record(v)
    many.record_many(np.array(values, dtype=np.uint64))
    assert (one.counts == many.counts).all() and one.count == many.count == len(values)


def test_bad_values_are_counted_not_recorded() -> None:
    h = LatencyHistogram(highest=10**6)
    h.record_many(np.array([-5, 10, 2 * 10**6], dtype=np.int64))
    h.record_many(np.array([np.nan, -1.0, 20.4]))
    h.record_many(np.array([2**64 - 3], dtype=np.uint64))  # a wrapped negative difference
    assert h.rejected == 4 and h.saturated == 1 and h.count == 3
    assert h.max == 2 * 10**6 and h.min == 10
    assert h.percentile(100) == 2 * 10**6 and h.percentile(50) == 20
    with pytest.raises(TypeError, match="numeric"):
        h.record_many(np.array(["x"]))


def test_empty_histogram_reports_zeros() -> None:
    h = LatencyHistogram()
    h.record_many(np.array([], dtype=np.int64))
    s = h.percentiles()
    assert s["count"] == 0 and s["p99"] == 0 and s["jitter"] == 0 and h.percentile(50) == 0


def test_to_dict_is_json_and_round_trips() -> None:
    values = np.random.default_rng(9).integers(100, 10**8, 20_000)
    h = LatencyHistogram()
    h.record_many(values)
    d = json.loads(json.dumps(h.to_dict()))
    assert d["unit"] == "ns" and d["jitter_definition"] == "p99 - p50"
    assert {"p50", "p90", "p99", "p99.9", "p99.99", "max", "min", "mean", "count", "jitter"} <= d.keys()
    back = LatencyHistogram.from_dict(d)
    assert (back.counts == h.counts).all()
    assert back.percentiles() == pytest.approx(h.percentiles(), rel=1e-9)


def test_layout_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="1..5"):
        LatencyHistogram(significant_digits=0)
    with pytest.raises(ValueError, match="2\\*\\*53"):
        LatencyHistogram(highest=2**60)


def test_record_since_matches_record_many_bucket_for_bucket():
    """The C hot path (one call per burst: now - stamp, zero stamps skipped) fills the same buckets."""
    import copy
    import pickle

    rng = np.random.default_rng(7)
    now = 10**15
    stamps = (now - rng.integers(0, 10**13, 20_000)).astype(np.uint64)  # some above `highest`: saturated
    stamps[::11] = 0  # no stamp
    stamps[5] = now + 1  # in the future: rejected
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record_since(now, stamps[:7])
    a.record_since(now, stamps[7:])
    given = stamps[stamps != 0]
    b.record_many(np.int64(now) - given.astype(np.int64))
    assert np.array_equal(a.counts, b.counts)
    assert (a.count, a.min, a.max, a.rejected, a.saturated) == (b.count, b.min, b.max, b.rejected, b.saturated)
    assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.stddev == pytest.approx(b.stddev, rel=1e-9)
    for c in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        c.record_since(now, stamps[1:3])
        assert c.count == a.count + 2
