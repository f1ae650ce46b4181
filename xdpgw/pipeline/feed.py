"""The feed handler the gateway calls: decode -> sequence/arbitrate -> filter, per burst.

``FeedHandler.on_batch(batch, line)`` returns the messages to hand to user code, in sequence order
(a :class:`~xdpgw.protocol.decode.Decoded`, or ``None`` when there is nothing to deliver). With
``retransmit=(host, port)`` a small non-blocking UDP client sends the sequencer's requests to the
MoldUDP64 re-request server and feeds its answers back through the same decode path; call ``poll()``
when idle (or when ``fileno()`` is readable) so timers and answers are handled without traffic.

Hostile input never costs a good message: a broken copy delivers only its valid prefix and leaves
the rest missing for the other line or a retransmission; a session is believed after two well-formed
packets; a gap is only skipped once data after it is corroborated (see :mod:`~xdpgw.protocol.sequencer`).
``stats()`` is the feed part of the summary (:class:`xdpgw.pipeline.summary.FeedStats`): every message taken in
is delivered, filtered out (``--symbols``), a duplicate, rejected (by cause) or held (by reason).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from xdpgw.batch import Batch
from xdpgw.errors import GatewayError
from xdpgw.pipeline.summary import FeedStats
from xdpgw.protocol.arbiter import Arbiter
from xdpgw.protocol.decode import Decoded, Decoder
from xdpgw.protocol.fastpath import DEFER, FastPath
from xdpgw.protocol.moldudp64 import RetransmitRequest
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.protocol.subscribe import Subscription
from xdpgw.transport.socket import SocketReceiver


class RetransmitClient:
    """Non-blocking client of a MoldUDP64 re-request server. Its answers are a feed like any other: they
    come back to the port the requests left from, a `SocketReceiver`'s, and are read in bursts (one
    recvmmsg, the same `Batch`, kernel receive stamps). ``slot``: the largest answer taken (UDP's)."""

    def __init__(self, host: str, port: int, batch: int = 64, slot: int = 65536) -> None:
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except OSError as e:
            raise GatewayError(f"cannot resolve retransmission server {host}:{port} ({e})",
                               "check --retransmit HOST:PORT") from e
        self.addr = info[4]
        any_addr = "::" if info[0] == socket.AF_INET6 else "0.0.0.0"
        # a free port; a small buffer (answers are rare: no capped-buffer warning without root); no busy poll
        self.rx = SocketReceiver(0, any_addr, rcvbuf=256 << 10, busy_poll_us=0, batch=batch, slot=slot)
        self.sent = self.send_errors = self.received = 0

    def fileno(self) -> int:
        return self.rx.fileno()

    def send(self, requests: Iterable[RetransmitRequest]) -> None:
        for req in requests:
            try:
                self.rx.sendto(req.encode(), self.addr)
                self.sent += 1
            except OSError:  # full buffer or ICMP-refused: the sequencer retries on its own timer
                self.send_errors += 1

    def recv(self, max_packets: int = 256) -> Batch:
        """Whatever answers are waiting, up to a burst (never blocks; valid until the next call)."""
        batch = self.rx.recv_batch(max_packets, timeout=0)
        self.received += batch.count
        return batch

    def close(self) -> None:
        self.rx.close()


class FeedHandler:
    """MoldUDP64/ITCH 5.0 feed handler for one feed, one or two (A/B) lines."""

    def __init__(self, symbols: Iterable[str] | None = None, locates: Iterable[int] | None = None,
                 retransmit: tuple[str, int] | None = None, clock: Callable[[], float] = time.monotonic,
                 give_up_after: float = 1.0, arbitration_window: float = 0.002, retry_interval: float = 0.05,
                 max_buffered: int = 1 << 20, first_seq: int | None = None, lines: int = 2,
                 fast: bool = True) -> None:
        """``give_up_after`` applies when retransmitting; otherwise holes wait ``arbitration_window``
        (for the other line or a reordered packet) before they are skipped and counted missing.
        ``fast``: take in-order bursts through the C fast path (:mod:`xdpgw.protocol.fastpath`)."""
        self.clock = clock
        self.decoder = Decoder()
        self.client = RetransmitClient(*retransmit) if retransmit else None
        wait = max(give_up_after, arbitration_window) if retransmit else arbitration_window
        self.sequencer = Sequencer(retransmit=retransmit is not None, give_up_after=wait,
                                   retry_interval=retry_interval, max_buffered=max_buffered,
                                   first_seq=first_seq)
        self.arbiter = Arbiter(self.sequencer, lines)
        self.single_line = lines == 1
        self.subscription = Subscription(symbols, locates)
        self.arbitrating = False
        self.delivered = 0
        self.filtered = 0  # delivered by the sequencer, not subscribed
        self._type_counts = np.zeros(256, np.int64)  # delivered messages by type code, but for:
        self._uncounted: list[np.ndarray] = []  # type codes of recent deliveries (counted in batches)
        self.decode_errors: dict[str, int] = {}
        self.fast = FastPath(self) if fast else None

    def on_burst(self, buf: Any, offs: Any, lens: Any, ts: Any, n: int, t_poll: int = 0) -> int:
        """The fast path over a receiver's C arrays (``Receiver.c_arrays``): messages delivered (then
        ``self.fast.out`` holds them until the next burst), or ``DEFER`` (call :meth:`on_batch`)."""
        fast = self.fast
        if fast is None or not (fast.s.armed | fast.s.proving) & 1:
            return DEFER
        return fast.run(buf, offs, lens, ts, n, self.clock(), t_poll)  # DEFER: synced, on_batch goes general

    def on_batch(self, batch: Batch, line: int = 0) -> Decoded | None:
        """Decode one burst from ``line`` and return the messages to deliver now, in sequence order."""
        if line:
            if line >= len(self.arbiter.lines):
                raise GatewayError(f"line {line} does not exist", f"use 0..{len(self.arbiter.lines) - 1}")
            self.arbitrating = True
        fast = self.fast
        if fast is not None:
            if fast.takes(line):
                k = fast.run_batch(batch, self.clock(), line)
                if k != DEFER:
                    return fast.out if k else None
            fast.sync()
        try:
            return self._general(batch, line)
        finally:
            if fast is not None:
                fast.arm()

    def _general(self, batch: Batch, line: int) -> Decoded | None:
        now = self.clock()
        dec = self._decode(batch)
        # one line: nothing to arbitrate (per-line stats are only reported with several lines)
        first = (self.sequencer.on_decoded(dec, now, line) if self.single_line
                 else self.arbiter.on_decoded(dec, line, now))
        if self.client is None:
            return self._deliver_one(first)
        return self._deliver([first, *self._retransmission_io(now)])

    def poll(self) -> Decoded | None:
        """Run timers (retries, give-ups) and read retransmission answers without new traffic."""
        fast = self.fast
        if fast is not None:
            if fast.idle(self.clock()):  # armed: no hole, no line hole, no answer waiting, nothing due
                return None
            fast.sync()
        try:
            return self._poll()
        finally:
            if fast is not None:
                fast.arm()

    def _poll(self) -> Decoded | None:
        now = self.clock()
        parts = self._retransmission_io(now)
        parts.append(self.arbiter.poll(now))
        parts += self._retransmission_io(now, receive=False)
        return self._deliver(parts)

    def fileno(self) -> int | None:
        """The retransmission socket, for the caller's poll loop (None without retransmission)."""
        return self.client.fileno() if self.client else None

    def stats(self) -> FeedStats:
        if self.fast is not None:
            self.fast.flush()
        sq = self.sequencer
        s = sq.counters
        out: FeedStats = {
            "received": s["received"],
            "messages": self.delivered,
            "messages_by_type": self.by_type,
            "filtered": self.filtered,
            "gaps": s["gaps"],
            "missing": s["missing"],
            "duplicates": s["duplicates"] + s["late"],
            "recovered": s["recovered"],
            "decode_errors": dict(self.decode_errors),
            "rejected": {k: v for k, v in sq.rejected.items() if v},
            "held": {k: v for k, v in sq.held().items() if v},
        }
        if self.arbitrating:
            out["lines"] = self.arbiter.stats()
        return out

    def detail(self) -> dict[str, Any]:
        """Everything the sequencer and retransmission client count (for status pages and debugging)."""
        if self.fast is not None:
            self.fast.flush()
        d: dict[str, Any] = {"sequencer": self.sequencer.stats(), "session": self.sequencer.session,
                             "next": self.sequencer.next, "ended": self.sequencer.ended,
                             "last_heard": self.sequencer.last_heard, "session_choice": self.sequencer.choice}
        if self.client:
            d["retransmit"] = {"sent": self.client.sent, "send_errors": self.client.send_errors,
                               "received": self.client.received}
        return d

    def close(self) -> None:
        if self.client:
            self.client.close()

    def __enter__(self) -> FeedHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------------
    def _decode(self, batch: Batch) -> Decoded:
        dec = self.decoder.decode(batch)
        if dec.errors:
            for k, v in dec.errors.items():
                self.decode_errors[k] = self.decode_errors.get(k, 0) + v
        return dec

    def _retransmission_io(self, now: float, receive: bool = True) -> list[Decoded]:
        if not self.client:
            return []
        parts = []
        if receive:
            answers = self.client.recv()
            if answers.count:
                parts.append(self.sequencer.on_decoded(self._decode(answers), now))
        self.client.send(self.sequencer.take_actions())
        return parts

    def _deliver(self, parts: list[Decoded]) -> Decoded | None:
        parts = [p for p in parts if len(p)]
        return self._deliver_one(Decoded.concat(parts)) if parts else None

    def _deliver_one(self, dec: Decoded) -> Decoded | None:
        if not len(dec):
            return None
        out = self.subscription.filter(dec)
        self.filtered += len(dec) - len(out)
        if not len(out):
            return None
        self.delivered += len(out)
        self._uncounted.append(out.type)  # delivered messages are all valid
        if len(self._uncounted) >= 64:
            self._count_types()
        return out

    def _count_types(self) -> None:
        if self._uncounted:
            types = self._uncounted[0] if len(self._uncounted) == 1 else np.concatenate(self._uncounted)
            self._type_counts += np.bincount(types, minlength=256)
            self._uncounted = []

    @property
    def by_type(self) -> dict[str, int]:
        """Delivered messages by ITCH type letter."""
        self._count_types()
        codes = np.flatnonzero(self._type_counts)
        return dict(zip((chr(c) for c in codes.tolist()), self._type_counts[codes].tolist(), strict=True))
