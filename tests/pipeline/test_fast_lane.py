"""The Gateway's fast lane over a real receiver (UDP on loopback): in-order bursts go through the C fast
path, anything else through the general path, and the handler sees the same messages either way; the
flight recorder notes every burst."""

from __future__ import annotations

import numpy as np

from tests.helpers import ReplayReceiver
from xdpgw.batch import Batch
from xdpgw.pipeline import flight
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.pipeline.gateway import Gateway
from xdpgw.protocol import itch
from xdpgw.protocol.moldudp64 import encode_heartbeat, encode_packet
from xdpgw.transport.socket import SocketReceiver, SocketSender


def feed_packets(n: int) -> list[bytes]:
    """``n`` packets of 1-3 messages, sequences 1.., a heartbeat every 10th, a repeat and a hole once."""
    out, seq = [], 1
    for i in range(n):
        if i % 10 == 9:
            out.append(encode_heartbeat("LANE", seq))
            continue
        k = 1 + i % 3
        out.append(encode_packet("LANE", seq, [itch.encode_message("D", locate=1, order_ref=seq + j)
                                               for j in range(k)]))
        seq += k
    out.insert(n - 30, out[n - 40])  # a late repeat
    del out[n - 15]  # a hole
    return out


def run(fast: bool, packets: list[bytes], taps=()) -> tuple[list[int], dict, Gateway]:
    got: list[int] = []
    with SocketReceiver(0, "127.0.0.1") as rx, SocketSender("127.0.0.1", rx.port) as tx:
        feed = FeedHandler(lines=1, fast=fast, arbitration_window=0.0)
        if fast:
            feed.fast.set_trace(16)
        gw = Gateway([rx], [lambda dec: got.extend(dec.seq.tolist())], feed=feed, status=None, burst=5,
                     taps=taps)
        for i in range(0, len(packets), 7):
            assert tx.send_batch(Batch.from_payloads(packets[i : i + 7])) == len(packets[i : i + 7])
        summary = gw.run(count=len(packets), duration=10)
        return got, summary, gw


def test_fast_lane_delivers_what_the_general_path_delivers():
    packets = feed_packets(200)
    fast, s_fast, gw = run(True, packets)
    slow, s_slow, _ = run(False, packets)
    assert fast == slow and len(fast) > 300
    for k in ("packets", "bytes", "messages", "gaps", "missing", "duplicates"):
        assert s_fast[k] == s_slow[k], k
    assert s_fast["latency_ns"]["count"] == s_slow["latency_ns"]["count"] == len(packets)
    assert 0 < s_fast["fast_path_packets"] < len(packets) and s_slow["fast_path_packets"] == 0
    tr = flight.entries(gw.fast)
    assert len(tr) == 16 and (tr[:, 6] > 0).all()  # the ring kept the newest bursts (40 in all)
    slow_bursts = (tr[:, 7] >> 32) & 1
    assert 0 < slow_bursts.sum() < len(tr)  # both paths ran
    assert (tr[:, 3] >= tr[:, 2]).all() and (tr[:, 4] >= tr[:, 3]).all() and (tr[:, 5] >= tr[:, 4]).all()
    assert "bursts" in flight.explain(tr)


def test_a_tap_sees_every_raw_packet_once_and_keeps_the_fast_lane():
    """Taps (pcap writer, the strategy's receive stamps) see each raw burst before decoding on both paths,
    and no longer switch the fast path off."""
    packets = feed_packets(200)
    seen: list[bytes] = []
    fast, s_fast, _ = run(True, packets, taps=[lambda batch, rx: seen.extend(batch.payloads())])
    slow, _, _ = run(False, packets)
    assert seen == packets  # every payload once, in arrival order, whichever path took its burst
    assert fast == slow and 0 < s_fast["fast_path_packets"] < len(packets)


def test_line_b_takes_the_fast_lane_over_kernel_sockets():
    """``--line-b`` on kernel sockets (one receiver per port, real loopback datagrams): each burst's line
    comes from its ports (``Batch.dports``) in C, as on XDP; the handler and summary see what the general
    path gives, and line B's copies are counted in C too."""
    packets = feed_packets(120)
    lost_on_a = set(range(5, 120, 17))
    runs = []
    for fast in (True, False):
        got: list[int] = []
        with SocketReceiver(0, "127.0.0.1") as rx_a, SocketReceiver(0, "127.0.0.1") as rx_b, \
                SocketSender("127.0.0.1", rx_a.port) as to_a, SocketSender("127.0.0.1", rx_b.port) as to_b:
            feed = FeedHandler(lines=2, fast=fast, arbitration_window=5.0)  # line B fills A's holes
            gw = Gateway([rx_a, rx_b], [lambda dec, got=got: got.extend(dec.seq.tolist())], feed=feed,
                         status=None, burst=4, line_b_port=rx_b.port)
            sent = 0
            for i in range(0, len(packets), 6):  # line A loses some; line B carries all, a little later
                a = [p for j, p in enumerate(packets[i : i + 6], i) if j not in lost_on_a]
                b = packets[i : i + 6]
                assert to_a.send_batch(Batch.from_payloads(a)) == len(a)
                assert to_b.send_batch(Batch.from_payloads(b)) == len(b)
                sent += len(a) + len(b)
            summary = gw.run(count=sent, duration=10)
        runs.append((got, summary))
    (fast_got, s_fast), (slow_got, s_slow) = runs
    assert fast_got == slow_got and len(fast_got) > 150
    for k in ("packets", "bytes", "messages", "gaps", "missing", "duplicates", "lines", "received"):
        assert s_fast[k] == s_slow[k], k
    assert s_fast["latency_ns"]["count"] == s_slow["latency_ns"]["count"] == s_fast["packets"]
    assert s_slow["fast_path_packets"] == 0 and s_fast["fast_path_packets"] > s_fast["packets"] // 2
    assert s_fast["missing"] == 0 and s_fast["lines"][0]["first"] > s_fast["lines"][1]["first"] > 0


def test_flight_recorder_splits_a_tail_into_kernel_and_ours():
    us = 1000
    rows = np.array([
        # rx_first, rx_last, poll, decode, ready, done, packets, flags, thread CPU time at ready
        [0, 0, 1000 * us, 1001 * us, 1002 * us, 1500 * us, 1, 1, 0],  # a long handler ...
        [1010 * us, 1010 * us, 1500 * us, 1501 * us, 1502 * us, 1503 * us, 1, 1, 500 * us],  # ... delays this
        [2000 * us, 2000 * us, 1900 * us, 2300 * us, 2301 * us, 2302 * us, 1, 1, 600 * us],  # 300 µs: kernel ...
    ], np.int64)
    rep = flight.explain(rows)
    assert rep["tails"] == 2
    assert rep["by_main_part"] == {"kernel": 1, "ours_previous": 1, "ours_between": 0, "ours_burst": 0}
    assert rep["descheduled"] == 1  # ... or rather: the consumer ran 100 of the 799 µs since the last burst
    assert rep["by_cause"] == {"off_cpu": 1, "kernel": 0, "ours": 1}  # each tail once, by what took most of it


class _Replay(ReplayReceiver):
    """A receiver that hands out the next in-order packet of one feed, rewritten in place (the loop's
    own allocations are what is measured, so this allocates nothing per burst)."""

    def __init__(self) -> None:
        from xdpgw._native._xsk import ffi

        self.frame = self.buf = np.frombuffer(
            bytearray(encode_packet("LOOP", 1, [itch.encode_message("D", locate=1)])), np.uint8).copy()
        self.seq = self.frame[10:18].view(">u8")
        self.offs, self.lens = np.zeros(1, np.int64), np.full(1, len(self.frame), np.uint32)
        self.ts, self.dports = np.zeros(1, np.uint64), np.zeros(1, np.uint16)
        self.c_arrays = (ffi.from_buffer("uint8_t[]", self.frame), ffi.from_buffer("int64_t[]", self.offs),
                         ffi.from_buffer("uint32_t[]", self.lens), ffi.from_buffer("uint64_t[]", self.ts),
                         ffi.from_buffer("uint16_t[]", self.dports))
        self.next = 1

    def recv_raw(self, max_packets: int = 256, timeout: float | None = 0.0) -> int:
        self.seq[0] = self.next
        self.next += 1
        return 1



def test_the_consumer_loop_allocates_nothing_per_burst():
    """Gateway + feed + handler over in-order bursts: 200k more bursts leave no more blocks behind."""
    import sys

    delivered = [0]

    def handler(dec) -> None:
        delivered[0] += len(dec)

    gw = Gateway([_Replay()], [handler], feed=FeedHandler(lines=1, symbols=["AB"], locates=[1]), status=None)
    gw.run(count=1000)  # warm up: the session is confirmed, the fast path armed
    left = []
    for n in (100_000, 300_000):
        before = sys.getallocatedblocks()
        summary = gw.run(count=n)
        left.append(sys.getallocatedblocks() - before)
        assert summary["fast_path_packets"] == n
    assert abs(left[1] - left[0]) <= 16  # a few numbers of the summary, not one block per burst
    assert delivered[0] == 401_000
