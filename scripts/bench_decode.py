#!/usr/bin/env python3
"""Decode-only throughput: the vectorised path (C split + per-type gather) vs the struct reference.

Realistic mix (A 40%, D 35%, U 10%, E 5%, X 5%, rest 5%), 20-30 messages per packet, bursts of
``--burst`` packets as a receiver hands them over; one core. Prints both rates and the ratio, then the
fixed per-call cost: microseconds per ``decode_batch`` and per ``FeedHandler(lines=1).on_batch`` call on
in-order bursts of 1, 4, 16 and 256 packets.
"""

from __future__ import annotations

import argparse
import time

from xdpgw.feed import FeedHandler
from xdpgw.protocol.decode import Decoder
from xdpgw.protocol.reference import decode_packets
from xdpgw.protocol.synth import split_batch, synth_packets


def best_rate(fn, nmsg: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return nmsg / best


def per_call_us(burst_packets: int, calls: int, repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` microseconds per decode call and per one-line ``on_batch`` call."""
    bursts, seq = [], 1
    for i in range(calls):
        b, codes = synth_packets(burst_packets, first_seq=seq, seed=i)
        bursts.append(b)
        seq += len(codes)
    dec_best = feed_best = float("inf")
    for _ in range(repeat):
        dec = Decoder()
        t0 = time.perf_counter()
        for b in bursts:
            dec.decode(b)
        dec_best = min(dec_best, time.perf_counter() - t0)
        feed = FeedHandler(lines=1, first_seq=1, clock=lambda: 0.0)
        t0 = time.perf_counter()
        for b in bursts:
            feed.on_batch(b)
        feed_best = min(feed_best, time.perf_counter() - t0)
    return dec_best / calls * 1e6, feed_best / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=20_000)
    ap.add_argument("--burst", type=int, default=256, help="packets per decode_batch call")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pipeline", action="store_true", help="also time FeedHandler.on_batch end to end")
    ap.add_argument("--small-calls", type=int, default=500, help="calls per small-burst timing (0: skip)")
    args = ap.parse_args()

    batch, codes = synth_packets(args.packets, seed=1)
    nmsg = len(codes)
    bursts = split_batch(batch, args.burst)
    payloads = batch.payloads()
    dec = Decoder()

    def vectorised() -> None:
        for b in bursts:
            dec.decode(b)

    def reference() -> None:
        decode_packets(payloads)

    got = sum(len(dec.decode(b)) for b in bursts)
    assert got == nmsg == len(decode_packets(payloads)[0]), "decoders disagree on the message count"
    fast = best_rate(vectorised, nmsg, args.repeat)
    slow = best_rate(reference, nmsg, max(1, args.repeat // 2))
    print(f"messages: {nmsg} in {args.packets} packets, bursts of {args.burst} packets")
    print(f"{'decoder':<12}{'msgs/s':>16}")
    print(f"{'vectorised':<12}{fast:>16,.0f}")
    print(f"{'struct':<12}{slow:>16,.0f}")
    print(f"ratio: {fast / slow:.1f}x")
    if args.small_calls:
        print("per call, in-order bursts (one line):")
        print(f"  {'packets':>7}{'decode_batch us':>18}{'on_batch us':>14}")
        for size in (1, 4, 16, 256):
            d_us, f_us = per_call_us(size, max(10, args.small_calls // max(1, size // 16)), args.repeat)
            print(f"  {size:>7}{d_us:>18.1f}{f_us:>14.1f}")
    if args.pipeline:
        print("pipeline (decode + sequence + filter), unique msgs/s:")
        for label, kw, lines in (("one line", {}, (0,)), ("locates 1..899", {"locates": range(1, 900)}, (0,)),
                                 ("A/B lines", {}, (0, 1))):
            def run(kw=kw, lines=lines) -> None:
                feed = FeedHandler(clock=lambda: 0.0, first_seq=1, **kw)
                for b in bursts:
                    for line in lines:
                        feed.on_batch(b, line)
            print(f"  {label:<16}{best_rate(run, nmsg, max(1, args.repeat // 2)):>16,.0f}")


if __name__ == "__main__":
    main()
