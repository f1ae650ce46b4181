"""Packet loss on one line and on A/B lines: exact deliveries, and bookkeeping that stays O(new data).

Pure logic with a fake clock. The complexity tests count work instead of timing it: every ``Decoded``
the sequencer builds is counted by rows, and the total must stay a small multiple of the messages fed,
however long the window keeps a backlog (the old code re-took the whole backlog every burst).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import builders
from xdpgw.batch import Batch
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.protocol.arbiter import Arbiter
from xdpgw.protocol.backlog import Backlog
from xdpgw.protocol.decode import Decoded, Decoder, decode_payloads, gather
from xdpgw.protocol.holes import HoleTable, RangeLog
from xdpgw.protocol.moldudp64 import encode_heartbeat
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.tools.synth import split_batch, synth_packets

SESSION = b"SESSION001"


pkt = partial(builders.pkt, session=SESSION)


def feed_packets(n: int, per_packet: tuple[int, int] = (1, 1), seed: int = 1) -> tuple[Batch, np.ndarray]:
    """``n`` synthetic packets and the sequence each one starts at."""
    batch, _ = synth_packets(n, per_packet, seed=seed)
    dec = Decoder().decode(batch)
    return batch, dec.pkt_seq.astype(np.int64)


def loss_mask(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    lost = rng.random(n) < rate
    lost[0] = lost[-1] = False  # joined at the first sequence; the last one shows the holes before it
    return lost


def messages(batch: Batch, mask: np.ndarray) -> np.ndarray:
    """Sequences of the messages of the packets ``mask``."""
    dec = Decoder().decode(batch)
    return dec.seq[mask[dec.pkt]].astype(np.int64)


def run(feed: FeedHandler, lines: list[list[Batch]], clock: list[float], step: float,
        ) -> tuple[np.ndarray, list[int]]:
    """Feed the lines burst by burst (interleaved), then a heartbeat and the window: what was delivered,
    and the buffer size after each round."""
    got, buffered = [], []
    for k in range(len(lines[0])):
        clock[0] += step
        for line, bursts in enumerate(lines):
            out = feed.on_batch(bursts[k], line)
            if out is not None:
                got.append(out.seq.astype(np.int64))
        buffered.append(feed.sequencer.stats()["buffered"])
    end = int(feed.sequencer.high)
    for line in range(len(lines)):
        out = feed.on_batch(Batch.from_payloads([encode_heartbeat(SESSION, end)]), line)
        if out is not None:
            got.append(out.seq.astype(np.int64))
    clock[0] += 3600.0
    out = feed.poll()
    if out is not None:
        got.append(out.seq.astype(np.int64))
    return (np.concatenate(got) if got else np.zeros(0, np.int64)), buffered


# --- exact deliveries under loss ------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "per_packet", "seed"), [
    (0.01, (1, 1), 1), (0.2, (1, 1), 2), (0.5, (1, 1), 3), (0.05, (1, 4), 4), (0.3, (2, 6), 5)])
def test_one_line_delivers_exactly_what_arrived_in_order(rate, per_packet, seed):
    batch, _ = feed_packets(3000, per_packet, seed=seed)
    lost = loss_mask(np.random.default_rng(seed), batch.count, rate)
    clock = [0.0]
    feed = FeedHandler(lines=1, clock=lambda: clock[0])
    got, _ = run(feed, [split_batch(batch, 64, ~lost)], clock, 0.0005)
    expected = messages(batch, ~lost)
    assert np.array_equal(got, expected)
    st_ = feed.stats()
    assert st_["missing"] == len(messages(batch, lost)) and st_["messages"] == len(expected)
    assert st_["duplicates"] == 0 and feed.sequencer.stats()["buffered"] == 0


@pytest.mark.parametrize("seed", range(4))
def test_ab_lines_with_independent_loss_deliver_each_message_once_in_order(seed):
    batch, _ = feed_packets(4000, (1, 3), seed=seed)
    rng = np.random.default_rng(seed)
    lost_a, lost_b = loss_mask(rng, batch.count, 0.05), loss_mask(rng, batch.count, 0.05)
    clock = [0.0]
    feed = FeedHandler(lines=2, clock=lambda: clock[0])
    got, _ = run(feed, [split_batch(batch, 64, ~lost_a), split_batch(batch, 64, ~lost_b)], clock, 0.0005)
    both = lost_a & lost_b
    assert np.array_equal(got, messages(batch, ~both))
    st_ = feed.stats()
    on_both = len(messages(batch, both))
    assert st_["missing"] == on_both
    a, b = st_["lines"]
    assert a["lost_on_both"] == b["lost_on_both"] == on_both
    assert a["covered"] == len(messages(batch, lost_a & ~lost_b))
    assert b["covered"] == len(messages(batch, lost_b & ~lost_a))
    assert a["first"] + b["first"] == len(got)


def test_line_b_lagging_by_many_bursts_fills_the_holes_of_line_a_within_the_window():
    batch, _ = feed_packets(2048, (1, 2), seed=9)
    rng = np.random.default_rng(9)
    lost_a, lost_b = loss_mask(rng, batch.count, 0.1), loss_mask(rng, batch.count, 0.1)
    a, b = split_batch(batch, 32, ~lost_a), split_batch(batch, 32, ~lost_b)
    lag = 8
    empty = Batch.empty()
    clock = [0.0]
    feed = FeedHandler(lines=2, clock=lambda: clock[0], arbitration_window=0.05)
    got, _ = run(feed, [a + [empty] * lag, [empty] * lag + b], clock, 0.001)
    assert np.array_equal(got, messages(batch, ~(lost_a & lost_b)))
    assert feed.stats()["missing"] == len(messages(batch, lost_a & lost_b))


@st.composite
def lossy_feed(draw: st.DrawFn) -> tuple[list[bytes], list[list[int]], list[bool]]:
    """Packets of 1-3 messages, each lost or not, in bursts, some bursts swapped with the next one."""
    n = draw(st.integers(2, 40))
    sizes = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    lost = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    lost[0] = lost[-1] = False
    packets, seq = [], 1
    for k in sizes:
        packets.append(pkt(seq, k))
        seq += k
    packets.append(encode_heartbeat(SESSION, seq))  # the idle feed's heartbeat shows the last holes
    lost.append(False)
    n += 1
    order = [i for i in range(n) if not lost[i]]
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(order) - 1)), max_size=8))))
    bursts = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True) if order[a:b]]
    for i in draw(st.lists(st.integers(0, len(bursts) - 2), max_size=3)) if len(bursts) > 1 else []:
        bursts[i], bursts[i + 1] = bursts[i + 1], bursts[i]  # reordered within the window
    return packets, bursts, lost


@given(lossy_feed())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_loss_pattern_delivers_what_arrived_once_in_order_and_counts_the_rest(case):
    packets, bursts, lost = case
    sq = Sequencer(give_up_after=1.0, first_seq=1)
    got: list[int] = []
    for k, burst in enumerate(bursts):
        got += [int(s) for s in sq.on_decoded(decode_payloads([packets[i] for i in burst]), k * 0.01).seq]
    got += [int(s) for s in sq.poll(99.0).seq]
    dec = decode_payloads(packets)
    keep = ~np.array(lost)[dec.pkt]
    assert got == [int(s) for s in dec.seq[keep]]
    assert sq.stats()["missing"] == int((~keep).sum()) and sq.stats()["buffered"] == 0 and not sq.holes


# --- the O(1)-ish paths agree with the general one -----------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_lossy_shortcut_equals_general_path(seed):
    batch, _ = feed_packets(1500, (1, 3), seed=seed)
    rng = np.random.default_rng(seed)
    lost = rng.random(batch.count) < (0.02, 0.3)[seed % 2]
    bursts = split_batch(batch, 16, ~lost)
    decoder = Decoder()
    fast, slow = Sequencer(give_up_after=0.005), Sequencer(give_up_after=0.005)
    slow.shortcuts = False
    for k, b in enumerate(bursts):
        dec = decoder.decode(b)
        a, c = fast.on_decoded(dec, k * 0.001), slow.on_decoded(dec, k * 0.001)
        assert np.array_equal(a.seq, c.seq) and a.by_type.keys() == c.by_type.keys()
        assert all(a.by_type[t].tobytes() == c.by_type[t].tobytes() for t in a.by_type)
        assert (fast.stats(), fast.next, fast.high, fast.sure) == (slow.stats(), slow.next, slow.high, slow.sure)
        assert fast.holes == slow.holes


# --- complexity: work per burst does not grow with the backlog -------------------------------------------
class RowCounter:
    """Counts the rows of every Decoded built while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        init = Decoded.__init__

        def counting_init(obj, seq, *args, **kw):
            self.rows += len(seq)
            init(obj, seq, *args, **kw)

        monkeypatch.setattr(Decoded, "__init__", counting_init)


@pytest.mark.parametrize("lines", [1, 2])
def test_buffer_stays_within_the_window_and_work_stays_linear(monkeypatch, lines):
    """A 40-burst window with holes in every burst: the buffer holds at most the window's messages,
    and everything the sequencer builds adds up to a few times what was fed, not bursts x backlog."""
    n, size, window = 256 * 160, 256, 40
    batch, _ = feed_packets(n, (1, 1), seed=3)
    rng = np.random.default_rng(3)
    masks = [loss_mask(rng, n, (0.02, 0.1)[lines - 1]) for _ in range(lines)]
    decoder = Decoder()
    decoded = [[decoder.decode(b) for b in split_batch(batch, size, ~m)] for m in masks]  # decoding not counted
    fed = sum(len(d) for line in decoded for d in line)
    clock = [0.0]
    feed = FeedHandler(lines=lines, clock=lambda: clock[0], arbitration_window=window * 1e-3)
    counter = RowCounter(monkeypatch)
    buffered, rows = [], []
    for k in range(len(decoded[0])):
        clock[0] += 1e-3
        for line in range(lines):
            dec = decoded[line][k]
            if lines == 1:
                feed._deliver_one(feed.sequencer.on_decoded(dec, clock[0]))
            else:
                feed._deliver_one(feed.arbiter.on_decoded(dec, line, clock[0]))
        buffered.append(feed.sequencer.stats()["buffered"])
        rows.append((counter.rows, feed.delivered))
    assert max(buffered) <= (window + 1) * size  # bounded by the window, not by time
    assert max(buffered) >= window * size * 0.5  # (the window did hold a backlog)
    assert counter.rows <= 3 * fed  # the old code: ~window/2 x fed
    def per_message(a: int, b: int) -> float:  # rows built per message delivered, bursts a..b
        return (rows[b][0] - rows[a][0]) / max(1, rows[b][1] - rows[a][1])

    assert per_message(119, 159) <= 1.2 * per_message(60, 100)  # later bursts cost what earlier ones did


def test_hole_table_edits_touch_only_the_rows_they_change(monkeypatch):
    """Appending holes and cutting the newest ones never moves the older rows."""
    table = HoleTable(capacity=8)
    moved = [0]
    replace = HoleTable._replace

    def counting(self, i, j, new):
        moved[0] += len(self) - j  # rows after the edit move
        replace(self, i, j, new)

    monkeypatch.setattr(HoleTable, "_replace", counting)
    for k in range(2000):  # a lossy line: each burst adds holes at the end; an old one is given up
        base = 10 * k
        table.append(np.array([base + 2, base + 6]), np.array([base + 3, base + 8]), 3, float(k))
        table.fill(np.array([base + 7]), float(k))  # a late packet fills the newest hole's end
        if k >= 100:
            table.pop(2)
    assert len(table) == 2 * 100 and moved[0] == 0


# --- the building blocks ---------------------------------------------------------------------------------
def test_hole_table_fill_keeps_the_timers_of_the_holes_it_cuts():
    t = HoleTable()
    fresh = t.extend(1, 20, now=1.0)
    assert fresh is None and [(h.start, h.end, h.since) for h in t.rows()] == [(1, 20, 1.0)]
    t.col("last")[0], t.col("attempts")[0] = 1.5, 2
    t.fill(np.array([1, 2, 5, 6, 9]), now=2.0)  # from its start, in the middle
    rows = [(h.start, h.end, h.since, h.last_request, h.attempts) for h in t.rows()]
    assert rows == [(3, 5, 2.0, 1.5, 2), (7, 9, 2.0, 1.5, 2), (10, 20, 2.0, 1.5, 2)]
    t.fill(np.array([12]), now=3.0)  # not from its start: the first piece keeps its wait
    assert [(h.start, h.end, h.since) for h in t.rows()][2:] == [(10, 12, 2.0), (13, 20, 3.0)]
    assert t.extend(20, 30, now=4.0) == 20  # the hole ending at the old mark grows, keeping its timers
    t.fill(np.array([25]), now=4.0, fresh_from=20)
    assert [(h.start, h.end, h.since, h.attempts) for h in t.rows()][3:] == [(13, 25, 3.0, 2), (26, 30, 4.0, 0)]
    t.fill(np.array([3, 4, 8, 26, 27, 28, 29]), now=5.0)  # whole holes: gone
    assert [(h.start, h.end) for h in t.rows()] == [(7, 8), (10, 12), (13, 25)]
    assert t.total == 1 + 2 + 12
    assert list(t.holding(np.array([6, 7, 9, 11, 24, 25]))) == [False, True, False, True, True, False]


def test_range_log_overlap_holding_and_bound():
    log = RangeLog(maxlen=4)
    log.add(np.array([2, 10, 20]), np.array([4, 15, 21]))
    assert list(log.holding(np.array([1, 2, 3, 4, 12, 20, 21]))) == [False, True, True, False, True, True, False]
    assert log.overlap(np.array([0, 12, 19]), np.array([3, 14, 30])) == 1 + 2 + 1
    log.add(np.array([30, 40]), np.array([31, 50]))
    assert list(log) == [(10, 15), (20, 21), (30, 31), (40, 50)]  # the oldest went
    many = np.arange(0, 200, 10)
    big = RangeLog()
    big.add(many, many + 5)
    a = np.arange(3, 190, 7)
    assert big.overlap(a, a + 4) == sum(len(set(range(x, x + 4)) & {s for m in many for s in range(m, m + 5)})
                                        for x in a)
    assert big.passed(26) == 3


def test_backlog_takes_ready_prefixes_in_sequence_order_across_parts():
    a = decode_payloads([pkt(1, 3), pkt(7, 2)])  # 1 2 3 7 8
    b = decode_payloads([pkt(4, 2), pkt(9, 1)])  # 4 5 9
    log = Backlog()
    log.add(a, a.seq.astype(np.int64))
    log.add(b, b.seq.astype(np.int64)[:2], np.array([0, 1]))  # only 4 5 of b
    assert len(log) == 7 and log.parts == 2
    pieces = log.take(6)
    got = gather([d for d, _ in pieces], [p for _, p in pieces]) if len(pieces) > 1 else pieces[0][0]
    assert [int(s) for s in got.seq] == [1, 2, 3, 4, 5] and len(log) == 2
    (rest, pick), = log.take(100)
    assert [int(s) for s in rest.slice(pick.start, pick.stop).seq] == [7, 8] and len(log) == 0


def test_gather_and_slice_match_take_byte_for_byte():
    batch, _ = synth_packets(40, (1, 6), seed=4)
    d = Decoder().decode(batch)
    rng = np.random.default_rng(4)
    idx = rng.permutation(len(d))[: len(d) // 2]
    for got, want in ((d.take(idx), None), (d.slice(5, 60), np.arange(5, 60)),
                      (gather([d, d], [slice(3, 9), np.array([40, 2])]), np.r_[3:9, 40, 2])):
        ref = idx if want is None else want
        assert np.array_equal(got.seq, d.seq[ref]) and np.array_equal(got.pkt_seq[got.pkt], d.pkt_seq[d.pkt[ref]])
        for t, recs in got.by_type.items():
            rows = {int(i): r.tobytes() for i, r in zip(d.index_by_type[t], d.by_type[t], strict=True)}
            assert [r.tobytes() for r in recs] == [rows[int(ref[i])] for i in got.index_by_type[t]]
        assert sum(len(r) for r in got.by_type.values()) == len(ref)


def test_arbiter_per_line_holes_are_settled_in_order():
    arb = Arbiter(Sequencer(give_up_after=0.01, first_seq=1), 2)

    def arb_run(line: int, seqs: list[int], now: float) -> list[int]:
        return [int(s) for s in arb.on_decoded(decode_payloads([pkt(s) for s in seqs]), line, now).seq]

    got = arb_run(0, [1, 3, 5, 7, 9], 0.0)  # A misses the even ones
    got += arb_run(1, [2, 4, 8, 9], 0.001)  # B misses 3, 5, 6, 7: only 6 on both
    got += [int(s) for s in arb.poll(1.0).seq]
    assert got == [1, 2, 3, 4, 5, 7, 8, 9]
    a, b = arb.stats()
    assert (a["gaps"], a["covered"], a["lost_on_both"]) == (4, 3, 1)
    assert (b["gaps"], b["covered"], b["lost_on_both"]) == (2, 3, 1)
