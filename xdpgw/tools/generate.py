"""A synthetic MoldUDP64/ITCH feed through any `Sender`: paced per burst, burst mode, deliberate faults.

`Feed` is sans-IO: it turns "the next n packets at time t" into a `Batch` (a realistic ITCH mix from
``xdpgw.tools.synth``, consecutive sequence numbers, every message stamped with the send time as
CLOCK_REALTIME ns since midnight, UTC) and injects the faults asked for: every k-th packet skipped (a
gap), sent twice (a duplicate), or followed by a malformed datagram (shorter than the MoldUDP64
header). Its ``report()`` says exactly what a receiver should see. `run_feed` paces a `Feed` through
a `Sender` by packets/s or messages/s, burst by burst.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.protocol.moldudp64 import HEADER_SIZE
from xdpgw.tools.synth import synth_packets
from xdpgw.transport.base import Sender, send_with_retries

NS_PER_DAY = 86_400 * 10**9
MALFORMED = b"XDPGW-BAD\x00\x00\x00"  # 12 bytes: shorter than the 20-byte MoldUDP64 header
_ARANGE8, _ARANGE6 = np.arange(8), np.arange(6)


def ns_since_midnight(realtime_ns: int) -> int:
    """CLOCK_REALTIME ns to ITCH time: ns since midnight (UTC)."""
    return realtime_ns % NS_PER_DAY


@dataclass(frozen=True, slots=True)
class Faults:
    """Every ``gap_every``-th packet is not sent, every ``dup_every``-th is sent twice, and every
    ``malformed_every``-th is followed by a malformed datagram (0: never). Counted in feed packets."""

    gap_every: int = 0
    dup_every: int = 0
    malformed_every: int = 0


@dataclass(frozen=True, slots=True)
class BurstMode:
    """``factor`` times the base rate for ``length`` s at the start of every ``every`` s."""

    factor: float = 100.0
    length: float = 0.1
    every: float = 1.0

    def effective(self, t: float) -> float:
        """Seconds of base-rate sending that elapsed time ``t`` is worth."""
        full, rest = divmod(t, self.every)
        burst_time = full * self.length + min(rest, self.length)
        return t + (self.factor - 1.0) * burst_time


class Feed:
    """Consecutive MoldUDP64 packets for one session, made in bursts (sans-IO).

    Packets come from a pool synthesised once (``pool`` packets, cycled); sequence numbers and
    timestamps are patched in place per burst, so a returned `Batch` is valid until the next call.
    """

    def __init__(self, session: str = "SYNTH", first_seq: int = 1, msgs_per_packet: tuple[int, int] = (2, 6),
                 faults: Faults = Faults(), pool: int = 4096, seed: int = 0) -> None:
        for name, every in (("gap", faults.gap_every), ("dup", faults.dup_every),
                            ("malformed", faults.malformed_every)):
            if every < 0 or every == 1 and name == "gap":
                raise GatewayError(f"--{name}-every {every} is not allowed", "use 0 (never) or an interval >= 2")
        batch, _ = synth_packets(pool, msgs_per_packet, first_seq=0, session=session, seed=seed)
        self.session, self.faults, self.pool = session, faults, pool
        self.mean_msgs = (msgs_per_packet[0] + msgs_per_packet[1]) / 2
        self._buf = np.concatenate([batch.buf, np.frombuffer(MALFORMED, np.uint8)])
        self._bad_off = len(batch.buf)
        self._offs, self._lens = batch.offsets, batch.lengths
        self._counts = (self._buf[self._offs + 18].astype(np.int64) << 8) | self._buf[self._offs + 19]
        self._ts_pos, self._msg_start = self._timestamp_positions()
        self.next_seq = first_seq
        self.first_seq = first_seq
        self.feed_packets = 0  # packets given a sequence range (sent or deliberately skipped)
        self.datagrams = self.messages = 0
        self.gaps: list[tuple[int, int]] = []
        self.duplicates = self.duplicate_messages = self.malformed = 0

    def _timestamp_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Buffer position of every message's 6-byte timestamp, packet by packet (CSR: ``msg_start``)."""
        pos = self._offs + HEADER_SIZE
        cols = []
        for j in range(int(self._counts.max())):  # one numpy step per message slot, not per message
            live = j < self._counts
            cols.append(np.where(live, pos + 2 + 5, -1))
            size = (self._buf[np.where(live, pos, 0)].astype(np.int64) << 8) | self._buf[np.where(live, pos + 1, 0)]
            pos = np.where(live, pos + 2 + size, pos)
        table = np.stack(cols, axis=1)
        msg_start = np.zeros(self.pool + 1, np.int64)
        np.cumsum(self._counts, out=msg_start[1:])
        return table[table >= 0], msg_start  # row-major: packet by packet, in message order

    def next_burst(self, n: int, realtime_ns: int | None = None) -> Batch:
        """The next ``n`` feed packets (at most ``pool``) as datagrams, faults applied, stamped ``realtime_ns``."""
        n = min(int(n), self.pool)
        if n <= 0:
            return Batch.empty()
        now = time.time_ns() if realtime_ns is None else realtime_ns
        start = self.feed_packets % self.pool
        idx = (start + np.arange(n)) % self.pool
        counts = self._counts[idx]
        seq = self.next_seq + np.concatenate([[0], np.cumsum(counts[:-1])])
        buf = self._buf
        buf[(self._offs[idx] + 10)[:, None] + _ARANGE8] = seq.astype(">u8").view(np.uint8).reshape(n, 8)
        ts = np.frombuffer(ns_since_midnight(now).to_bytes(8, "big")[2:], np.uint8)
        end = start + n
        spans = [(start, min(end, self.pool))] + ([(0, end - self.pool)] if end > self.pool else [])
        for a, b in spans:
            pos = self._ts_pos[self._msg_start[a] : self._msg_start[b]]
            buf[pos[:, None] + _ARANGE6] = ts
        k = self.feed_packets + 1 + np.arange(n)  # 1-based feed packet numbers
        f = self.faults
        skip = (k % f.gap_every == 0) if f.gap_every else np.zeros(n, bool)
        dup = ((k % f.dup_every == 0) & ~skip) if f.dup_every else np.zeros(n, bool)
        bad = (k % f.malformed_every == 0) if f.malformed_every else np.zeros(n, bool)
        reps = 1 - skip.astype(np.int64) + dup
        offs = np.repeat(self._offs[idx], reps)
        lens = np.repeat(self._lens[idx], reps)
        if bad.any():
            at = np.cumsum(reps)[bad]  # right after the packet's own datagram(s)
            offs = np.insert(offs, at, self._bad_off)
            lens = np.insert(lens, at, len(MALFORMED))
        self.gaps += [(int(s), int(c)) for s, c in zip(seq[skip], counts[skip], strict=True)]
        self.duplicates += int(dup.sum())
        self.duplicate_messages += int(counts[dup].sum())
        self.malformed += int(bad.sum())
        self.messages += int(counts[~skip].sum())
        self.datagrams += len(offs)
        self.feed_packets += n
        self.next_seq = int(seq[-1] + counts[-1])
        return Batch(buf, offs.astype(np.int64), lens.astype(np.uint32), np.zeros(len(offs), np.uint64))

    def report(self) -> dict:
        """What a receiver should see: messages sent once, the gaps left, duplicates, malformed datagrams."""
        return {
            "session": self.session, "first_seq": self.first_seq, "next_seq": self.next_seq,
            "feed_packets": self.feed_packets, "datagrams": self.datagrams, "messages": self.messages,
            "gaps": [list(g) for g in self.gaps], "gap_packets": len(self.gaps),
            "gap_messages": sum(c for _, c in self.gaps), "duplicates": self.duplicates,
            "duplicate_messages": self.duplicate_messages, "malformed": self.malformed,
        }


def run_feed(sender: Sender, feed: Feed, *, rate: float | None = None, msgs_rate: float | None = None,
             count: int | None = None, duration: float | None = None, burst: BurstMode | None = None,
             max_burst: int = 256, clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep, realtime: Callable[[], int] = time.time_ns,
             should_stop: Callable[[], bool] | None = None) -> dict:
    """Send ``feed`` through ``sender`` until ``count`` feed packets or ``duration`` s; the feed's report + pacing.

    Paced per burst: ``rate`` packets/s or ``msgs_rate`` messages/s (neither: as fast as possible),
    ``burst`` multiplies it periodically. ``unsent`` counts datagrams the sender would not take.
    """
    if rate is not None and msgs_rate is not None:
        raise GatewayError("both --rate and --msgs-rate given", "pace by packets/s or by messages/s, not both")
    if (rate is not None and rate <= 0) or (msgs_rate is not None and msgs_rate <= 0):
        raise GatewayError("the rate must be positive", "give --rate/--msgs-rate > 0, or leave it out for full speed")
    if count is None and duration is None:
        raise GatewayError("no end given", "pass --count N and/or --duration S")
    base = rate if rate is not None else msgs_rate
    t0 = clock()
    unsent = bursts = 0
    msgs0, sent0 = feed.messages, feed.feed_packets
    while True:
        t = clock() - t0
        done = feed.feed_packets - sent0
        if (count is not None and done >= count) or (duration is not None and t >= duration):
            break
        if should_stop is not None and should_stop():
            break
        n = max_burst
        if base is not None:
            target = base * (burst.effective(t) if burst else t)
            have = done if rate is not None else feed.messages - msgs0
            deficit = target - have
            n = int(deficit) if rate is not None else math.ceil(deficit / feed.mean_msgs)
            if n <= 0 or (rate is not None and deficit < 1):
                now_rate = base * (burst.factor if burst and (t % burst.every) < burst.length else 1.0)
                per_packet = 1.0 if rate is not None else feed.mean_msgs
                sleep(min(0.05, max(0.001, (per_packet - deficit) / now_rate)))  # >= 1 ms: bursts
                continue
        if count is not None:
            n = min(n, count - done)
        batch = feed.next_burst(min(n, max_burst), realtime())
        bursts += 1
        sent = send_with_retries(sender, batch)  # a short send is retried twice, then counted
        unsent += batch.count - sent
    elapsed = clock() - t0
    out = feed.report()
    out.update(seconds=elapsed, bursts=bursts, unsent=unsent,
               pps=(feed.feed_packets - sent0) / elapsed if elapsed > 0 else 0.0,
               mps=(feed.messages - msgs0) / elapsed if elapsed > 0 else 0.0,
               transport=getattr(sender, "transport", "?"))
    return out
