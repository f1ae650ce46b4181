#!/usr/bin/env python3
"""Decode-only throughput: the vectorised path (C split + per-type gather) vs the struct reference.

Realistic mix (A 40%, D 35%, U 10%, E 5%, X 5%, rest 5%), 20-30 messages per packet, bursts of
``--burst`` packets as a receiver hands them over; one core. Prints both rates and the ratio, then the
fixed per-call cost: microseconds per ``decode_batch`` (alone, and with its per-type views, which are
made on first use), and per ``FeedHandler(lines=1).on_batch`` call on in-order bursts of 1, 4, 16 and
256 packets.

``--loss 0,0.01,0.2`` instead times ``FeedHandler.on_batch`` under random packet loss (one-message
packets, real clock, the default 2 ms window): one line at each rate, then two lines each losing
``--ab-loss`` independently, interleaved burst by burst. Every run ends with a heartbeat, waits out the
window and checks that exactly the messages that arrived were delivered, once, in order, and that
``missing`` counts exactly the lost ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xdpgw.batch import Batch
from xdpgw.pipeline.feed import FeedHandler
from xdpgw.protocol.decode import Decoder
from xdpgw.protocol.moldudp64 import encode_heartbeat
from xdpgw.tools.reference import decode_packets
from xdpgw.tools.synth import split_batch, synth_packets


def best_rate(fn, nmsg: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return nmsg / best


def per_call_us(burst_packets: int, calls: int, repeat: int) -> tuple[float, float, float]:
    """Best-of-``repeat`` microseconds per decode call, per decode call whose per-type views are then
    used (they are made on first use), and per one-line ``on_batch`` call."""
    bursts, seq = [], 1
    for i in range(calls):
        b, codes = synth_packets(burst_packets, first_seq=seq, seed=i)
        bursts.append(b)
        seq += len(codes)
    dec_best = views_best = feed_best = float("inf")
    for _ in range(repeat):
        dec = Decoder()
        t0 = time.perf_counter()
        for b in bursts:
            dec.decode(b)
        dec_best = min(dec_best, time.perf_counter() - t0)
        dec = Decoder()
        t0 = time.perf_counter()
        for b in bursts:
            dec.decode(b).by_type  # noqa: B018 (a handler reading the records)
        views_best = min(views_best, time.perf_counter() - t0)
        feed = FeedHandler(lines=1, first_seq=1, clock=lambda: 0.0)
        t0 = time.perf_counter()
        for b in bursts:
            feed.on_batch(b)
        feed_best = min(feed_best, time.perf_counter() - t0)
    return dec_best / calls * 1e6, views_best / calls * 1e6, feed_best / calls * 1e6


def run_lossy(lines: list[list[Batch]], n: int, session: bytes, lost: np.ndarray) -> dict[str, float]:
    """Feed each line's bursts, interleaved burst by burst, through one FeedHandler; time it and check
    what it delivered: every sequence that arrived on some line once, in order; ``missing`` the rest."""
    feed = FeedHandler(lines=len(lines))
    got: list[np.ndarray] = []
    max_buffered = 0
    t0 = time.perf_counter()
    for k in range(len(lines[0])):
        for line, bursts in enumerate(lines):
            out = feed.on_batch(bursts[k], line)
            if out is not None:
                got.append(out.seq)
        if k % 16 == 0:
            max_buffered = max(max_buffered, feed.sequencer.stats()["buffered"])
    dt = time.perf_counter() - t0
    packets = sum(b.count for bursts in lines for b in bursts)
    hb = Batch.from_payloads([encode_heartbeat(session, n + 1)])  # the idle feed's heartbeat
    for line in range(len(lines)):
        out = feed.on_batch(hb, line)
        if out is not None:
            got.append(out.seq)
    time.sleep(0.01)  # the window passes
    out = feed.poll()
    if out is not None:
        got.append(out.seq)
    delivered = np.concatenate(got).astype(np.int64) if got else np.zeros(0, np.int64)
    expected = np.flatnonzero(~lost) + 1
    st = feed.stats()
    ok = np.array_equal(delivered, expected) and st["missing"] == int(lost.sum())
    return {"mpps": packets / dt / 1e6, "ns": dt / packets * 1e9, "gaps": st["gaps"], "missing": st["missing"],
            "lost": int(lost.sum()), "max_buffered": max_buffered, "ok": ok}


def loss_bench(rates: list[float], ab_loss: float, packets: int, burst: int, seed: int = 0) -> bool:
    """Single line at each loss rate, then A/B with independent loss; prints one row each."""
    batch, _ = synth_packets(packets, (1, 1), seed=1)
    session = bytes(batch.payload(0)[:10])
    rng = np.random.default_rng(seed)
    print(f"one-message packets, bursts of {burst}, {packets} packets per line, real clock, 2 ms window")
    print(f"  {'scenario':<22}{'Mpps':>7}{'ns/pkt':>8}{'gaps':>8}{'missing':>9}{'lost':>8}{'max buffered':>14}  check")
    all_ok = True
    scenarios = [(f"one line, loss {r:g}", [rng.random(packets) < r]) for r in rates]
    if ab_loss:
        scenarios.append((f"A/B, loss {ab_loss:g} each", [rng.random(packets) < ab_loss for _ in range(2)]))
    for label, losses in scenarios:
        for lost in losses:  # the first and last packets arrive: the feed is joined at the first sequence
            lost[0] = lost[-1] = False  # seen, and a hole is only known once a later sequence shows it
        both = np.logical_and.reduce(losses)
        r = run_lossy([split_batch(batch, burst, ~lost) for lost in losses], packets, session, both)
        all_ok &= r["ok"]
        print(f"  {label:<22}{r['mpps']:>7.2f}{r['ns']:>8.0f}{r['gaps']:>8}{r['missing']:>9}{r['lost']:>8}"
              f"{r['max_buffered']:>14}  {'ok' if r['ok'] else 'WRONG'}")
    return all_ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=20_000)
    ap.add_argument("--burst", type=int, default=256, help="packets per decode_batch call")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pipeline", action="store_true", help="also time FeedHandler.on_batch end to end")
    ap.add_argument("--small-calls", type=int, default=500, help="calls per small-burst timing (0: skip)")
    ap.add_argument("--loss", help="comma-separated loss rates: time on_batch under packet loss instead")
    ap.add_argument("--ab-loss", type=float, default=0.05, help="with --loss: independent loss per A/B line (0: skip)")
    ap.add_argument("--loss-packets", type=int, default=256 * 400, help="with --loss: packets per line")
    args = ap.parse_args()
    if args.loss is not None:
        ok = loss_bench([float(x) for x in args.loss.split(",")], args.ab_loss, args.loss_packets, args.burst)
        raise SystemExit(0 if ok else 1)

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
        print(f"  {'packets':>7}{'decode_batch us':>18}{'+ by_type us':>14}{'on_batch us':>14}")
        for size in (1, 4, 16, 256):
            d_us, v_us, f_us = per_call_us(size, max(10, args.small_calls // max(1, size // 16)), args.repeat)
            print(f"  {size:>7}{d_us:>18.1f}{v_us:>14.1f}{f_us:>14.1f}")
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
