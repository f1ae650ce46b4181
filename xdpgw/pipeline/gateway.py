"""The consumer loop: receivers → (feed decoder) → user handlers, with live status and a summary.

The loop never knows which transport it has. It busy-polls: each receiver is asked for a burst
without blocking, so a core is spent on it (give it a core of its own: ``--cpu``).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from xdpgw._native._xsk import ffi, lib
from xdpgw.batch import Batch
from xdpgw.pipeline.histogram import LatencyHistogram, fold_latency, latency_acc
from xdpgw.pipeline.summary import Summary
from xdpgw.transport.base import Receiver

Handler = Callable[[object], None]


@dataclass
class Totals:
    packets: int = 0
    bytes: int = 0
    handler_errors: int = 0
    busy_ns: int = 0  # time spent on bursts that carried packets (receive + decode + handlers)
    fast_packets: int = 0  # packets the feed's C fast path took (the rest: the general path)
    started: float = field(default_factory=time.monotonic)


def _rate(n: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


class Gateway:
    """Drive one or more receivers until a limit is reached or the process is told to stop."""

    def __init__(
        self,
        receivers: Sequence[Receiver],
        handlers: Sequence[Handler] = (),
        feed: object | None = None,
        status: TextIO | None = sys.stderr,
        status_interval: float = 1.0,
        burst: int = 256,
        on_tick: Callable[[Gateway], None] | None = None,
        line_b_port: int | None = None,
        taps: Sequence[Callable[[Batch, Receiver], None]] = (),
    ) -> None:
        """``line_b_port``: A/B arbitration by UDP destination port (``Batch.dports``) on every receiver:
        packets to that port are line B, the others line A."""
        self.receivers = list(receivers)
        self.handlers = list(handlers)
        self.feed = feed
        self.status = status
        self.status_interval = status_interval
        self.burst = burst
        self.on_tick = on_tick
        self.line_b_port = line_b_port
        self.taps = list(taps)  # see every raw batch before decoding (e.g. the pcap writer)
        self.totals = Totals()
        self.latency = LatencyHistogram()
        self.last_error = ""
        self._stop = False
        self.fast = None  # the feed's FastPath, when the loop uses it
        self._acc = None  # (struct xgw_latency_acc, keep-alive) while the fast path stamps into self.latency
        self._gc_ran = self._ticked = False  # for the flight recorder's flags
        gc.collect()  # start-up garbage goes now, before traffic; run() freezes what is left

    def stop(self) -> None:
        self._stop = True

    # --- the hot loop -------------------------------------------------------------------------
    def run(self, count: int | None = None, duration: float | None = None, idle_timeout: float = 0.0) -> Summary:
        """Consume until ``count`` packets, ``duration`` seconds, or ``stop()``. Returns ``summary()``.

        Tails are kept out of the loop: garbage collection is frozen at start and only runs when idle
        (see :func:`idle_gc`); the status line, ``on_tick`` (state file, metrics) wait for an idle
        moment too (at most one interval late); with one receiver and a feed with a fast path, an in-order
        burst costs one C call to receive and one to decode, sequence, filter and stamp (on XDP without
        taps, one call for both); taps see every raw burst before it is decoded, on either path.
        """
        t = self.totals = Totals()
        deadline = t.started + duration if duration else None
        next_tick = t.started + self.status_interval
        last_packets, last_time = 0, t.started
        receivers, burst = self.receivers, self.burst
        wait = idle_timeout if len(receivers) == 1 else 0.0
        poll = getattr(self.feed, "poll", None)
        lanes = self._fast_lanes()
        trace = self.fast.trace is not None if self.fast is not None else False
        fast = lanes is not None
        if fast:
            on_burst, on_lines, port_b = self.feed.on_burst, self.fast.run_lines, self.line_b_port
            clock = self.feed.clock
            fs, took = self.fast.s, self.fast.took
            one_call = (wait == 0 and len(receivers) == 1 and hasattr(receivers[0], "recv_fast") and not self.taps
                        and clock is time.monotonic and port_b is None)
        else:
            lanes = [(rx, None) for rx in receivers]
        perf = time.perf_counter_ns
        gc_was = gc.isenabled()
        gc.freeze()  # what start-up made is never scanned again (collected in __init__: not with traffic waiting)
        gc.disable()  # collections run when idle (idle_gc), never in the middle of a burst
        try:
            while not self._stop:
                idle = True
                for rx, arrays in lanes:
                    t_recv = perf()
                    if fast:
                        m = burst if count is None else min(burst, count - t.packets)
                        if one_call:  # receive + fast path in one C call
                            n = rx.recv_fast(fs, m, t_recv)
                            k = took(fs.result) if n else 0
                        else:
                            n = rx.recv_raw(m, wait)
                            if n and self.taps:  # taps see the raw burst before decoding, as on the general path
                                self._tap(rx.batch_of(n), rx)
                            buf, offs, lens, ts, dports = arrays
                            if not n:
                                k = 0
                            elif port_b is None:
                                k = on_burst(buf, offs, lens, ts, n, t_recv)
                            else:  # A/B: each packet's line from its port (Batch.dports), split in C
                                k = on_lines(buf, offs, lens, ts, dports, n, port_b, clock(), t_recv)
                        if n:
                            idle = False
                            self._fast_burst(rx, n, k, t_recv)
                            t.busy_ns += perf() - t_recv
                        continue
                    batch = rx.recv_batch(burst, timeout=wait)
                    if batch.count:
                        idle = False
                        if count is not None and t.packets + batch.count > count:
                            batch = batch.slice(0, count - t.packets)
                        self._consume(batch, rx)
                        if trace:
                            self._trace_slow(batch, t_recv)
                        t.busy_ns += perf() - t_recv
                if idle and poll is not None:  # retransmission answers and gap timers, without traffic
                    self._deliver(poll())
                now = time.monotonic()
                if now >= next_tick and (idle or now >= next_tick + self.status_interval):
                    self._status_line((t.packets - last_packets) / max(now - last_time, 1e-9))
                    last_packets, last_time = t.packets, now
                    next_tick = now + self.status_interval
                    if self.on_tick:
                        self.on_tick(self)
                    self._ticked = True
                if idle or gc.get_count()[0] > 100_000:  # never idle: collect anyway, rarely
                    self._gc_ran |= idle_gc()
                if (count is not None and t.packets >= count) or (deadline is not None and now >= deadline):
                    break
        finally:
            gc.unfreeze()
            if gc_was:
                gc.enable()
        if self.status is not None and self.status.isatty():
            self.status.write("\n")
        return self.summary()

    def _fast_lanes(self) -> list | None:
        """``[(receiver, its C arrays)]`` when every receiver's bursts can take the feed's C fast path, else
        None. With ``line_b_port`` each burst is split by its packets' ports in C (``xgw_fast_lines``), on any
        transport: XDP's one receiver carries both lines, kernel sockets have one receiver per port."""
        from xdpgw.pipeline.feed import FeedHandler

        # a FeedHandler's own fast path only: a wrapper (e.g. BookFeed) has work of its own per burst
        self.fast = self.feed.fast if type(self.feed) is FeedHandler else None
        if self.fast is None or not all(hasattr(rx, "recv_raw") for rx in self.receivers):
            return None
        if self._acc is None:  # the fast path stamps latency into our histogram, in C
            self._acc = latency_acc(self.latency)
        self.fast.s.latency = self._acc[0]
        return [(rx, rx.c_arrays) for rx in self.receivers]

    def _fast_burst(self, rx: Receiver, n: int, k: int, t_recv: int) -> None:
        """After the fast path's answer ``k`` for a burst of ``n`` packets: deliver, or take the general path."""
        if k >= 0:
            t = self.totals
            t.packets += n
            t.fast_packets += n
            t.bytes += self.fast.s.in_bytes
            if k:
                self._deliver(self.fast.out)
            if self.line_b_port is not None and self.fast.s.defer_b:  # line A was taken, line B goes general
                self._line_b_general(rx, n, t_recv)
                return
        else:  # not the common case: the general path, as any burst (its taps have seen it already)
            batch = rx.batch_of(n)
            self._consume(batch, rx, tapped=True)
            if self.fast.trace is not None:
                self._trace_slow(batch, t_recv)
                return
        if self.fast.trace is not None:
            lib.xgw_trace_done(self.fast.s, time.perf_counter_ns(),
                               lib.XGW_TRF_GC * self._gc_ran | lib.XGW_TRF_TICK * self._ticked)
            self._gc_ran = self._ticked = False

    def _line_b_general(self, rx: Receiver, n: int, t_recv: int) -> None:
        """Line B's packets of a burst whose line A took the fast path, through the general path (as
        ``_consume`` would have taken them, after line A's)."""
        t = self.totals
        part = self.fast.line_b_batch(rx.batch_of(n).buf)
        t.fast_packets -= part.count
        t.bytes += int(part.lengths.sum())
        item = self.feed.on_batch(part, 1)
        self.latency.record_since(time.clock_gettime_ns(time.CLOCK_MONOTONIC), part.ts_ns)
        self._deliver(item)
        if self.fast.trace is not None:
            self._trace_slow(part, t_recv)

    def _trace_slow(self, batch: Batch, t_recv: int) -> None:
        """A flight-recorder entry for a burst the general path took (handlers included)."""
        fs = self.fast.s
        flags = (lib.XGW_TRF_SLOW | lib.XGW_TRF_GC * self._gc_ran | lib.XGW_TRF_TICK * self._ticked) << 32
        self._gc_ran = self._ticked = False
        ts = np.ascontiguousarray(batch.ts_ns[: batch.count], np.uint64)
        now = time.perf_counter_ns()
        lib.xgw_trace_burst(fs, ffi.from_buffer("uint64_t[]", ts), batch.count, t_recv, t_recv, now, flags)

    def _tap(self, batch: Batch, rx: Receiver) -> None:
        for tap in self.taps:
            tap(batch, rx)

    def _consume(self, batch: Batch, rx: Receiver, tapped: bool = False) -> None:
        """Count, tap and decode a burst. A/B lines come from the packets' ports (``split_lines``), never from
        which receiver got them."""
        t = self.totals
        n = batch.count
        t.packets += n
        t.bytes += int(batch.lengths[:n].sum())
        if not tapped:
            self._tap(batch, rx)
        if self.feed is None:
            items: list[object] = [batch]
        elif self.line_b_port is None:  # one line, whichever receiver
            items = [self.feed.on_batch(batch)]
        else:
            items = [self.feed.on_batch(part, ln) for ln, part in split_lines(batch, self.line_b_port)]
        # kernel receive (XDP metadata / SO_TIMESTAMPING) → handler, for every stamped packet; one C call
        self.latency.record_since(time.clock_gettime_ns(time.CLOCK_MONOTONIC), batch.ts_ns[:n])
        for item in items:
            self._deliver(item)

    def _deliver(self, item: object) -> None:
        if item is None:
            return
        for handler in self.handlers:
            try:
                handler(item)
            except Exception as exc:  # user code must never take the consumer down
                self.totals.handler_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"

    # --- reporting ----------------------------------------------------------------------------
    def stats(self) -> dict:
        merged: dict[str, int] = {}
        for rx in self.receivers:
            for k, v in rx.stats().items():
                merged[k] = merged.get(k, 0) + int(v)
        return merged

    def _status_line(self, pps: float) -> None:
        if self.status is not None:
            write_status(self.status, status_text(self.summary(), pps))

    def summary(self) -> Summary:
        """The one summary (see xdpgw/pipeline/summary.py): this loop's traffic fields, the feed's with a decoder."""
        fold_latency(self._acc, self.latency)
        t = self.totals
        duration = max(time.monotonic() - t.started, 1e-9)
        first = self.receivers[0].describe()
        st = self.stats()
        out: Summary = {
            "transport": first.get("transport"),
            "mode": first.get("mode"),
            "iface": first.get("iface"),
            "queue": first.get("queue") if len(self.receivers) == 1 else [r.describe().get("queue") for r in self.receivers],
            "port": first.get("port"),
            "packets": t.packets,
            "bytes": t.bytes,
            "drops": st.get("drops", 0),
            "duration_s": round(duration, 6),
            "pps": round(t.packets / duration, 1),
            "drops_kernel": {k: v for k, v in st.items() if k.startswith("xdp_") or k in ("truncated",)},
            "drops_bpf": {k[4:]: v for k, v in st.items() if k.startswith("bpf_")},
            "receiver": {k: v for k, v in st.items() if not k.startswith(("xdp_", "bpf_"))},
            "handler_errors": t.handler_errors,
            "ns_per_packet": round(t.busy_ns / t.packets, 1) if t.packets else None,
            "fast_path_packets": t.fast_packets,
        }
        if len(self.latency):
            out["latency_ns"] = {k: v for k, v in self.latency.percentiles().items()}
        if self.feed is not None:
            out.update(self.feed.stats())
        if self.last_error:
            out["last_handler_error"] = self.last_error
        return out


def idle_gc() -> bool:
    """Run the collection the interpreter would have run (it is disabled in the loop); True if one ran."""
    c0, c1, c2 = gc.get_count()
    t0, t1, t2 = gc.get_threshold()
    if c0 < max(t0, 1):
        return False
    gc.collect(2 if c2 >= t2 else 1 if c1 >= t1 else 0)
    return True


def status_text(summary: Mapping, pps: float, queue_pps: Mapping[int, float] | None = None) -> str:
    """The live status line for a summary (`Gateway.summary`, or the merged one of several workers)."""
    rate = f"{_rate(pps)}pps"
    if queue_pps:
        rate += " (" + " ".join(f"q{q} {_rate(p)}" for q, p in queue_pps.items()) + ")"
    parts = [f"{summary.get('transport')}", rate,
             f"total {summary['packets']} pkts {summary['bytes'] / 1e6:.1f} MB", f"drops {summary.get('drops', 0)}"]
    bpf = summary.get("drops_bpf") or {}
    if "passed" in bpf:
        parts.append(f"bpf redirected {bpf.get('redirected', 0)} passed {bpf['passed']}")
    lat = summary.get("latency_ns")
    if lat:
        parts.append(f"rx→app p50 {lat['p50'] / 1e3:.1f}µs p99 {lat['p99'] / 1e3:.1f}µs")
    if "messages" in summary:  # a feed decoder runs
        parts.append(f"msgs {summary['messages']} gaps {summary.get('gaps', 0)}")
        errs = sum((summary.get("decode_errors") or {}).values())
        if errs:
            parts.append(f"decode errors {errs}")
        if held := summary.get("held"):
            parts.append(f"held {sum(held.values())} (" + ", ".join(f"{k} {v}" for k, v in held.items()) + ")")
    if "books" in summary:  # --book
        from xdpgw.book.live import status_part

        parts.append(status_part(summary["books"]))
    if summary.get("handler_errors"):
        parts.append(f"handler errors {summary['handler_errors']}")
    return " | ".join(parts)


def write_status(stream: TextIO, line: str) -> None:
    """Rewrite the line in place on a terminal; one line per update otherwise (logs)."""
    stream.write("\r\x1b[K" + line if stream.isatty() else line + "\n")
    stream.flush()


def split_lines(batch: Batch, line_b_port: int) -> Sequence[tuple[int, Batch]]:
    """A burst's (line, batch) parts by UDP destination port (``Batch.dports``, which every receiver fills):
    line B is ``line_b_port``, line A the rest; the one path for every transport (a receiver is no line).
    Vectorised; a burst of one line is passed on whole."""
    is_b = batch.dports[: batch.count] == line_b_port
    if not is_b.any():
        return ((0, batch),)
    if is_b.all():
        return ((1, batch),)
    return ((0, batch.select(~is_b)), (1, batch.select(is_b)))


@contextlib.contextmanager
def signals_as_exit() -> object:
    """Turn SIGTERM/SIGHUP into SystemExit so every ``with``/``finally`` (detach!) runs."""
    import signal

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, _exit) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
